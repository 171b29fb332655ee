"""The export client against the simulator over real HTTP on 127.0.0.1."""

import base64
import email.utils
import itertools
import time
import zipfile
from datetime import timedelta

import pytest

from pipeline.amplitude.archive import ArchiveError
from pipeline.amplitude.export import (
    DamagedArchive,
    ExportClient,
    ExportError,
    HourTooLarge,
    fetch_windows,
)
from pipeline.hours import ExportWindow
from pipeline.http import AuthError, Timeouts
from simulator import Fault, Simulator, SimulatorConfig
from tests.conftest import DAY, EMPTY_HOURS, SMALL, make_client

H = timedelta(hours=1)
BUSY = ExportWindow(DAY + 8 * H, DAY + 8 * H)
assert SMALL.hour_count(BUSY.first_hour) > 25  # several members


def test_a_window_streams_to_disk_as_a_valid_zip(simulator, tmp_path):
    with make_client(simulator) as client:
        download = client.download(BUSY, tmp_path / "a.zip", splittable=False)
    assert download.path == tmp_path / "a.zip" and download.attempts == 1
    assert download.bytes == download.path.stat().st_size
    names = zipfile.ZipFile(download.path).namelist()
    assert any(name.endswith("#0.json.gz") for name in names)
    (request,) = simulator.export_requests()
    assert request.params == {"start": "20260301T08", "end": "20260301T08"}


def test_404_means_no_events_not_an_error(tmp_path):
    empty_hour = EMPTY_HOURS[0]
    with Simulator(SMALL) as sim, make_client(sim) as client:
        download = client.download(ExportWindow(empty_hour, empty_hour), tmp_path / "e.zip",
                                   splittable=False)
    assert download.path is None and download.bytes == 0
    assert not (tmp_path / "e.zip").exists()


@pytest.mark.parametrize("api_key, secret, status", [("wrong", "sim-secret-key", 403),
                                                     ("sim-api-key", "wrong", 403)])
def test_bad_credentials_fail_at_once_naming_variables_not_values(simulator, tmp_path, api_key,
                                                                  secret, status):
    client = ExportClient(simulator.url, api_key, secret, region="eu", sleep=lambda s: None)
    with client, pytest.raises(AuthError) as caught:
        client.download(BUSY, tmp_path / "a.zip", splittable=False)
    message = str(caught.value)
    assert f"({status})" in message and "AMPLITUDE_API_KEY" in message
    assert "AMPLITUDE_SECRET_KEY" in message and "'eu'" in message
    assert "wrong" not in message and "sim-secret-key" not in message
    assert len(simulator.export_requests()) == 1


def test_missing_credentials_are_refused_before_any_request():
    with pytest.raises(AuthError, match="AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY"):
        ExportClient("http://127.0.0.1:9", "", "")


def test_429_waits_as_long_as_retry_after_says(simulator, tmp_path):
    simulator.inject(Fault.status(429, retry_after=7), Fault.status(429, retry_after=3))
    with make_client(simulator) as client:
        download = client.download(BUSY, tmp_path / "a.zip", splittable=False)
        assert client.sleeps == [7.0, 3.0]
    assert download.attempts == 3


@pytest.mark.parametrize("fault", [
    Fault.status(500), Fault.status(502), Fault.status(503), Fault.truncate(0.5),
    Fault.drop(), Fault.corrupt(), Fault.slow(3.0),
], ids=["500", "502", "503", "truncated", "dropped", "not-a-zip", "read-timeout"])
def test_transient_failures_are_retried(simulator, tmp_path, fault):
    simulator.inject(fault)
    with make_client(simulator, read=1.0) as client:
        download = client.download(BUSY, tmp_path / "a.zip", splittable=False)
        assert len(client.sleeps) == 1 and 0 < client.sleeps[0] <= 0.01
    assert download.attempts == 2
    assert zipfile.ZipFile(download.path).testzip() is None
    assert list(tmp_path.glob("*.part")) == []


def test_retries_are_bounded_in_count(simulator, tmp_path):
    simulator.inject(*[Fault.status(503)] * 10)
    with make_client(simulator, max_attempts=3) as client, \
            pytest.raises(ExportError, match="failed after 3 attempts"):
        client.download(BUSY, tmp_path / "a.zip", splittable=False)
    assert len(simulator.export_requests()) == 3


def test_retries_are_bounded_in_time(simulator, tmp_path):
    simulator.inject(*[Fault.status(429, retry_after=50)] * 10)
    with make_client(simulator, max_attempts=10, max_elapsed_seconds=120) as client, \
            pytest.raises(ExportError, match=r"failed after 3 attempts in 100 s \(the server "
                          r"asked for 50 s more, past the 120 s retry budget\)"):
        client.download(BUSY, tmp_path / "a.zip", splittable=False)


def test_connection_refused_is_retried_then_reported(tmp_path):
    client = ExportClient("http://127.0.0.1:9", "k", "s", timeouts=Timeouts(1, 1),
                          sleep=lambda s: None)
    with client, pytest.raises(ExportError, match="connection failed"):
        client.download(BUSY, tmp_path / "a.zip", splittable=False)


def test_oversized_windows_halve_down_to_single_hours(tmp_path):
    config = SimulatorConfig(profile=SMALL.profile, events_per_member=25, max_hours_before_504=3)
    day = ExportWindow(DAY, DAY + 23 * H)
    with Simulator(config) as sim, make_client(sim) as client:
        downloads = list(fetch_windows(client, [day], tmp_path))
        served = [(r.params["start"], r.params["end"], r.status) for r in sim.export_requests()]
    assert [d.window.hour_count for d in downloads] == [3] * 8
    assert sum(d.window.hour_count for d in downloads) == 24
    assert served[:4] == [("20260301T00", "20260301T23", 504), ("20260301T00", "20260301T11", 504),
                          ("20260301T00", "20260301T05", 504), ("20260301T00", "20260301T02", 200)]
    assert sum(d.attempts for d in downloads) == len(served)


def test_an_hour_over_the_size_cap_points_to_the_s3_export(tmp_path):
    config = SimulatorConfig(profile=SMALL.profile, events_per_member=25, size_cap_bytes=2_000)
    with Simulator(config) as sim, make_client(sim) as client, \
            pytest.raises(HourTooLarge, match=r"2026-03-01T08 alone .* Amazon S3 export"):
        list(fetch_windows(client, [ExportWindow(DAY + 8 * H, DAY + 9 * H)], tmp_path))
    assert [r.status for r in sim.export_requests()] == [400, 400]


def test_a_single_hour_504_is_retried_then_reported_as_too_large(simulator, tmp_path):
    simulator.inject(*[Fault.status(504)] * 5)
    with make_client(simulator, max_attempts=3) as client, \
            pytest.raises(HourTooLarge, match="Amazon S3"):
        list(fetch_windows(client, [BUSY], tmp_path))
    assert len(simulator.export_requests()) == 3


def test_a_429_is_honoured_in_full_even_beyond_the_backoff_cap(simulator, tmp_path):
    simulator.inject(Fault.status(429, retry_after=120))
    with make_client(simulator, max_delay_seconds=5) as client:
        client.download(BUSY, tmp_path / "a.zip", splittable=False)
        assert client.sleeps == [120.0]


def test_a_member_failing_its_crc_is_refetched(simulator, tmp_path):
    good = simulator.archive(BUSY.first_hour, BUSY.last_hour).path.read_bytes()
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF  # inside a member's data; the central directory stays intact
    simulator.inject(Fault.corrupt(bytes(damaged)))
    with make_client(simulator) as client:
        download = client.download(BUSY, tmp_path / "a.zip", splittable=False)
    assert download.attempts == 2
    assert download.path.read_bytes() == good


def test_a_trickling_body_is_cut_off_at_the_time_budget(simulator, tmp_path):
    """Read timeouts apply per read, so only a deadline inside the body loop bounds a trickle."""
    times = itertools.chain([0.0], itertools.repeat(100.0))  # the body "takes" 100 s
    client = make_client(simulator, max_elapsed_seconds=15)
    client._clock = lambda: next(times)
    with client, pytest.raises(ExportError, match=r"after 1 attempts.*time budget"):
        client.download(BUSY, tmp_path / "a.zip", splittable=False)
    assert list(tmp_path.iterdir()) == []


# ---- the fault matrix's HTTP cases, on the client alone ----

def test_messages_name_the_upload_hour_as_partitions_are_named(simulator, tmp_path):
    simulator.inject(*[Fault.status(503)] * 3)
    with make_client(simulator, max_attempts=3) as client, \
            pytest.raises(ExportError) as caught:
        client.download(BUSY, tmp_path / "a.zip", splittable=False)
    assert str(caught.value).startswith(
        "export of upload hour 2026-03-01T08 (export window 20260301T08..20260301T08) "
        "failed after 3 attempts")


@pytest.mark.parametrize("fault", [Fault.reset(0.5), Fault.stall(0.5, seconds=30),
                                   Fault.hang(), Fault.html()],
                         ids=["reset", "read-timeout-mid-body", "never-answers", "html-200"])
def test_more_transient_failures_are_retried(simulator, tmp_path, fault):
    simulator.inject(fault)
    with make_client(simulator, read=0.5) as client:
        download = client.download(BUSY, tmp_path / "a.zip", splittable=False)
    assert download.attempts == 2
    good = simulator.archive(BUSY.first_hour, BUSY.last_hour).path.read_bytes()
    assert download.path.read_bytes() == good
    assert list(tmp_path.glob("*.part")) == []


def test_a_gzip_content_encoding_saves_the_zip_itself(simulator, tmp_path):
    simulator.inject(Fault.gzip_encoded())
    with make_client(simulator) as client:
        download = client.download(BUSY, tmp_path / "a.zip", splittable=False)
    assert download.attempts == 1
    good = simulator.archive(BUSY.first_hour, BUSY.last_hour).path
    assert download.path.read_bytes() == good.read_bytes()
    assert download.bytes == good.stat().st_size


def test_a_gzip_encoded_body_cut_short_is_caught_by_its_content_length(simulator, tmp_path):
    simulator.inject_always(Fault.gzip_encoded())
    simulator.inject(Fault.truncate(0.6))
    with make_client(simulator) as client:
        download = client.download(BUSY, tmp_path / "a.zip", splittable=False)
    assert download.attempts == 2


def test_an_html_page_every_time_fails_quoting_the_page(simulator, tmp_path):
    simulator.inject_always(Fault.html())
    with make_client(simulator, max_attempts=3) as client, \
            pytest.raises(ExportError) as caught:
        client.download(BUSY, tmp_path / "a.zip", splittable=False)
    message = str(caught.value)
    assert not isinstance(caught.value, ArchiveError)  # the way there's fault, not the data's
    assert "upload hour 2026-03-01T08" in message and "failed after 3 attempts" in message
    assert "(text/html; charset=utf-8) is not a zip archive" in message
    assert "<title>Temporarily unavailable</title>" in message
    quoted = message.split("is not a zip archive: ")[1]
    assert 150 <= len(quoted) <= 210 and "\n" not in quoted
    assert len(simulator.export_requests()) == 3


def test_a_page_that_echoes_the_credentials_is_quoted_without_them(simulator, tmp_path):
    key, secret = simulator.config.api_key, simulator.config.secret_key
    token = base64.b64encode(f"{key}:{secret}".encode()).decode()
    simulator.inject_always(Fault.html(f"<p>Authorization: Basic {token}</p><p>key={key} "
                                       f"secret={secret}</p>"))
    with make_client(simulator, max_attempts=2) as client, \
            pytest.raises(ExportError) as caught:
        client.download(BUSY, tmp_path / "a.zip", splittable=False)
    message = str(caught.value)
    assert "Authorization: Basic ***" in message and "key=*** secret=***" in message
    assert key not in message and secret not in message and token not in message


def test_an_error_body_that_echoes_the_credentials_is_quoted_without_them(simulator, tmp_path):
    secret = simulator.config.secret_key
    simulator.inject(Fault.status(403, body=f"Invalid API Key for secret {secret}"))
    with make_client(simulator) as client, pytest.raises(AuthError) as caught:
        client.download(BUSY, tmp_path / "a.zip", splittable=False)
    assert secret not in str(caught.value) and "secret ***" in str(caught.value)


@pytest.mark.parametrize("fault, member", [
    (Fault.damaged_directory(), None),
    (Fault.corrupt(), None),
], ids=["central-directory", "no-directory"])
def test_a_zip_that_stays_damaged_is_an_archive_error_naming_the_hour(simulator, tmp_path,
                                                                      fault, member):
    simulator.inject_always(fault)
    with make_client(simulator, max_attempts=3) as client, \
            pytest.raises(DamagedArchive) as caught:
        client.download(BUSY, tmp_path / "a.zip", splittable=False)
    error = caught.value
    assert isinstance(error, ArchiveError) and isinstance(error, ExportError)
    assert error.upload_hours == (BUSY.first_hour,) and error.member == member
    assert "upload hour 2026-03-01T08" in str(error) and "damaged zip archive" in str(error)
    assert len(simulator.export_requests()) == 3
    assert list(tmp_path.iterdir()) == []


def test_a_member_that_keeps_failing_its_crc_is_named(simulator, tmp_path):
    good = simulator.archive(BUSY.first_hour, BUSY.last_hour).path.read_bytes()
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF
    simulator.inject_always(Fault.corrupt(bytes(damaged)))
    with make_client(simulator, max_attempts=2) as client, \
            pytest.raises(DamagedArchive, match="fails its CRC") as caught:
        client.download(BUSY, tmp_path / "a.zip", splittable=False)
    assert caught.value.member.endswith(".json.gz")


@pytest.mark.parametrize("header, waited", [
    ("2", (2.0, 2.0)),
    (None, (0.0, 0.02)),  # an HTTP date 30 s ahead, built below
    ("soon", (0.0, 0.01)), ("nan", (0.0, 0.01)), ("-1e309", (0.0, 0.01)),
], ids=["seconds", "http-date", "garbage", "nan", "minus-infinity"])
def test_429_retry_after_in_seconds_as_a_date_or_garbage(simulator, tmp_path, header, waited):
    if header is None:
        header = email.utils.formatdate(time.time() + 30, usegmt=True)
        waited = (28.0, 30.0)
    simulator.inject(Fault.status(429, retry_after=header))
    with make_client(simulator) as client:
        client.download(BUSY, tmp_path / "a.zip", splittable=False)
        (slept,) = client.sleeps
    assert waited[0] <= slept <= waited[1]
