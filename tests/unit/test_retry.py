from datetime import UTC, datetime

import httpx
import pytest

from pipeline.http import redact
from pipeline.retry import retry_after_seconds

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("header", "seconds"), [
    ("7", 7.0), ("0.5", 0.5), ("-3", 0.0),
    ("Tue, 01 Dec 2026 12:00:30 GMT", 30.0),  # an HTTP date, as RFC 9110 allows
    ("Tue, 01 Dec 2026 11:59:00 GMT", 0.0),  # already past
    ("nan", None), ("inf", None), ("soon", None), ("", None),  # garbage: the caller's backoff
])
def test_retry_after_takes_seconds_or_a_date_and_ignores_garbage(header, seconds):
    response = httpx.Response(429, headers={"Retry-After": header} if header else {})
    assert retry_after_seconds(response, now=NOW) == seconds


def test_a_base_url_is_never_shown_with_its_credentials():
    assert redact("https://key:secret@amplitude.com:8443/api") == "https://amplitude.com:8443/api"
    assert redact("https://amplitude.com") == "https://amplitude.com"
