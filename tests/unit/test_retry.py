import base64
from datetime import UTC, datetime

import httpx
import pytest

from pipeline.http import ApiClient, Credentials, excerpt, redact
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


def test_an_excerpt_is_printable_short_and_one_line():
    page = b"<html>\n  <title>Bad\tGateway</title>\x00\x1b[31m" + b"x" * 500 + b"\xff</html>"
    quoted = excerpt(page)
    assert quoted.startswith("<html> <title>Bad Gateway</title> [31mxxx")
    assert len(quoted) == 200 and quoted.isprintable()
    assert excerpt("short") == "short" and excerpt(b"") == ""


def test_a_client_quotes_bodies_without_its_credentials():
    client = ApiClient("http://127.0.0.1:9", Credentials("key-1234", "secret-5678", "KEY, SECRET"))
    token = base64.b64encode(b"key-1234:secret-5678").decode()
    assert client.excerpt(f"a {token} b secret-5678 c key-1234") == "a *** b *** c ***"
    # a secret straddling the end of the excerpt is blanked whole, not cut in two
    assert "secret" not in client.excerpt("x" * 195 + "secret-5678")
    short = ApiClient("http://127.0.0.1:9", Credentials("k", "s", "KEY, SECRET"))
    assert short.excerpt("keys and secrets") == "keys and secrets"  # one letter is no secret
