"""The simulated Export API over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import io
import os
import re
import signal
import subprocess
import sys
import threading
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from simulator import Fault, HourProfile, Simulator, SimulatorConfig
from simulator.protocol import MSG_NO_DATA, MSG_TIMEOUT, MSG_TOO_LARGE

DAY = datetime(2025, 7, 1, tzinfo=UTC)
EXPORT = "/api/2/export"
NAME = re.compile(r"(?:(\d+)/)?(\d+)_(\d{4}-\d{2}-\d{2})_(\d{1,2})#(\d+)\.json\.gz")
ROOT = Path(__file__).resolve().parents[2]


def stamp(hour: datetime) -> str:
    return f"{hour:%Y%m%dT%H}"


def export(http: httpx.Client, start: datetime, end: datetime, **kwargs) -> httpx.Response:
    return http.get(EXPORT, params={"start": stamp(start), "end": stamp(end)}, **kwargs)


def fetch(sim: Simulator, start: datetime, end: datetime) -> httpx.Response:
    """One export request with the right credentials, on a fresh client."""
    auth = (sim.config.api_key, sim.config.secret_key)
    with httpx.Client(base_url=sim.url, auth=auth, timeout=10) as http:
        return export(http, start, end)


def members(content: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def lines_by_hour(content: bytes) -> dict[datetime, bytes]:
    """Concatenated NDJSON per upload hour, members in zip order."""
    out: dict[datetime, bytes] = {}
    for name, data in members(content):
        if name.endswith("/"):
            continue
        match = NAME.fullmatch(name)
        assert match, name
        hour = datetime.strptime(f"{match[3]} {match[4]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
        out[hour] = out.get(hour, b"") + gzip.decompress(data)
    return out


def busy_hour(sim: Simulator) -> datetime:
    return next(DAY + timedelta(hours=h) for h in range(24) if sim.hour_count(DAY.replace(hour=h)))


def empty_hour(sim: Simulator) -> datetime:
    return next(
        DAY + timedelta(hours=h) for h in range(24) if not sim.hour_count(DAY.replace(hour=h))
    )


# -- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
    ],
)
def test_missing_or_garbled_credentials_get_401(sim: Simulator, client: httpx.Client, header):
    headers = {} if header is None else {"Authorization": header}
    with httpx.Client(base_url=sim.url, timeout=10) as anonymous:
        response = export(anonymous, DAY, DAY, headers=headers)
    assert response.status_code == 401


@pytest.mark.parametrize("auth", [("wrong", "sim-secret-key"), ("sim-api-key", "wrong")])
def test_wrong_key_or_secret_gets_403_invalid_api_key(client: httpx.Client, auth):
    response = export(client, DAY, DAY, auth=auth)
    assert response.status_code == 403
    assert response.json()["error"]["metadata"]["details"] == "Invalid API Key"


# -- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"start": "20250701T00"},
        {"end": "20250701T00"},
        {"start": "2025-07-01T00", "end": "20250701T01"},
        {"start": "20250701T00", "end": "20250701T24"},
        {"start": "20250701T5", "end": "20250701T06"},
        {"start": "20250701T00", "end": "20250701"},
        {"start": "20250701T02", "end": "20250701T01"},  # start after end
        {"start": "20240701T00", "end": "20250702T00"},  # more than 365 days
    ],
)
def test_bad_parameters_get_400_with_a_message(client: httpx.Client, params):
    response = client.get(EXPORT, params=params)
    assert response.status_code == 400
    assert response.text


def test_365_days_is_allowed():
    config = SimulatorConfig(profile=HourProfile(empty_every=1))  # no data at all
    with (
        Simulator(config) as sim,
        httpx.Client(base_url=sim.url, auth=("sim-api-key", "sim-secret-key")) as http,
    ):
        assert export(http, DAY, DAY + timedelta(days=365)).status_code == 404
        assert export(http, DAY, DAY + timedelta(days=365, hours=1)).status_code == 400


def test_empty_window_gets_404(sim: Simulator, client: httpx.Client):
    hour = empty_hour(sim)
    response = export(client, hour, hour)
    assert response.status_code == 404
    assert response.text == MSG_NO_DATA


def test_unknown_path_gets_404_and_keeps_the_fault(sim: Simulator, client: httpx.Client):
    sim.inject(Fault.status(500))
    assert client.get("/api/2/not-an-endpoint").status_code == 404
    assert sim.pending_faults == [Fault.status(500)]
    assert export(client, DAY, DAY).status_code == 500


# -- archives --------------------------------------------------------------------------------


def test_zip_layout_folder_names_and_numbering_from_0(sim: Simulator, client: httpx.Client):
    start, end = DAY, DAY + timedelta(hours=5)
    response = export(client, start, end)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert int(response.headers["content-length"]) == len(response.content)
    names = [name for name, _ in members(response.content)]
    assert names[0] == "636686/"
    expected = [m.name for m in sim.expected_members(start, end)]
    assert names[1:] == expected
    for hour in (start + timedelta(hours=h) for h in range(6)):
        count = sim.hour_count(hour)
        hour_names = [n for n in expected if f"_{hour:%Y-%m-%d}_{hour.hour}#" in n]
        assert len(hour_names) == -(-count // 50)  # 50 events per member
        numbers = [int(NAME.fullmatch(n)[5]) for n in hour_names]
        assert numbers == list(range(len(hour_names)))


def test_busy_hour_members_numbered_from_1_without_folder():
    hour = DAY + timedelta(hours=9)
    config = SimulatorConfig(
        hour_counts={hour: 125},
        events_per_member=50,
        first_member_number=1,
        project_folder=False,
        project_id=187520,
    )
    with (
        Simulator(config) as sim,
        httpx.Client(base_url=sim.url, auth=("sim-api-key", "sim-secret-key")) as http,
    ):
        response = export(http, hour, hour)
        assert response.status_code == 200
        got = members(response.content)
        assert [n for n, _ in got] == [f"187520_2025-07-01_9#{n}.json.gz" for n in (1, 2, 3)]
        assert [gzip.decompress(d).count(b"\n") for _, d in got] == [50, 50, 25]
        assert lines_by_hour(response.content)[hour] == b"".join(sim.hour_lines(hour))


def test_served_lines_equal_hour_lines_and_end_is_inclusive(sim: Simulator, client: httpx.Client):
    start, end = DAY, DAY + timedelta(hours=23)
    response = export(client, start, end)
    assert response.status_code == 200
    served = lines_by_hour(response.content)
    expected_hours = [start + timedelta(hours=h) for h in range(24)]
    assert sorted(served) == [h for h in expected_hours if sim.hour_count(h)]
    for hour, data in served.items():
        assert data == b"".join(sim.hour_lines(hour))
        assert data.count(b"\n") == sim.hour_count(hour)
    assert sum(d.count(b"\n") for d in served.values()) == sim.window_count(start, end)
    one = busy_hour(sim)
    single = lines_by_hour(export(client, one, one).content)
    assert list(single) == [one]


def test_over_size_cap_gets_400():
    config = SimulatorConfig(size_cap_bytes=100_000)
    with (
        Simulator(config) as sim,
        httpx.Client(base_url=sim.url, auth=("sim-api-key", "sim-secret-key")) as http,
    ):
        hour = busy_hour(sim)
        assert export(http, hour, hour).status_code == 200  # one hour fits
        response = export(http, DAY, DAY + timedelta(hours=23))
        assert response.status_code == 400
        assert response.text == MSG_TOO_LARGE
        assert "4GB" in response.text


def test_windows_longer_than_the_limit_get_504():
    config = SimulatorConfig(max_hours_before_504=3)
    with (
        Simulator(config) as sim,
        httpx.Client(base_url=sim.url, auth=("sim-api-key", "sim-secret-key")) as http,
    ):
        assert export(http, DAY, DAY + timedelta(hours=2)).status_code == 200
        response = export(http, DAY, DAY + timedelta(hours=3))
        assert response.status_code == 504
        assert response.text == MSG_TIMEOUT


def test_same_config_same_bytes_and_seed_changes_them(client: httpx.Client):
    first = export(client, DAY, DAY + timedelta(hours=3)).content
    for seed, same in ((0, True), (1, False)):
        with Simulator(SimulatorConfig(events_per_member=50, seed=seed)) as other:
            body = fetch(other, DAY, DAY + timedelta(hours=3)).content
        assert (body == first) is same


def test_parallel_build_gives_the_same_bytes_and_cache_dir_persists(tmp_path: Path):
    hour = DAY + timedelta(hours=10)
    base = SimulatorConfig(hour_counts={hour: 2_500}, events_per_member=1_000)
    parallel = SimulatorConfig(
        hour_counts={hour: 2_500}, events_per_member=1_000, parallel_min_events=1, workers=2
    )
    bodies = []
    for config in (base, parallel):
        with Simulator(config, cache_dir=tmp_path / str(len(bodies))) as sim:
            bodies.append(fetch(sim, hour, hour).content)
    assert bodies[0] == bodies[1]
    kept = list((tmp_path / "1").rglob("*.zip"))
    assert len(kept) == 1 and kept[0].read_bytes() == bodies[1]
    with Simulator(parallel, cache_dir=tmp_path / "1") as sim:
        assert sim.archive(hour, hour).path == kept[0]


def test_concurrent_requests_get_the_same_archive(sim: Simulator, client: httpx.Client):
    start, end = DAY + timedelta(hours=12), DAY + timedelta(hours=20)
    bodies: list[bytes] = []

    def fetch() -> None:
        with httpx.Client(base_url=sim.url, auth=("sim-api-key", "sim-secret-key")) as http:
            bodies.append(export(http, start, end).content)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(bodies) == 4 and len(set(bodies)) == 1


# -- faults ----------------------------------------------------------------------------------


def test_status_faults_are_consumed_in_order(sim: Simulator, client: httpx.Client):
    sim.inject(Fault.status(429, retry_after=3), Fault.status(503), Fault.status(502, body="oops"))
    first = export(client, DAY, DAY)
    assert first.status_code == 429
    assert first.headers["retry-after"] == "3"
    second = export(client, DAY, DAY)
    assert second.status_code == 503 and "retry-after" not in second.headers
    third = export(client, DAY, DAY)
    assert (third.status_code, third.text) == (502, "oops")
    assert export(client, DAY, DAY).status_code in (200, 404)
    assert [r.fault for r in sim.export_requests()] == ["status", "status", "status", None]


def test_clear_faults(sim: Simulator, client: httpx.Client):
    sim.inject(Fault.status(500), Fault.drop())
    sim.clear_faults()
    assert sim.pending_faults == []
    assert export(client, busy_hour(sim), busy_hour(sim)).status_code == 200


def test_truncate_sends_full_length_then_part_of_the_body(sim: Simulator, client: httpx.Client):
    hour = busy_hour(sim)
    full = export(client, hour, hour)
    sim.inject(Fault.truncate(0.25))
    with pytest.raises(httpx.RemoteProtocolError):
        export(client, hour, hour)
    record = sim.export_requests()[-1]
    assert record.status == 200 and record.fault == "truncate"
    assert record.bytes_sent == int(len(full.content) * 0.25)
    assert export(client, hour, hour).content == full.content  # the next request is fine


def test_slow_trips_the_client_read_timeout(sim: Simulator, client: httpx.Client):
    hour = busy_hour(sim)
    sim.inject(Fault.slow(0.6))
    with pytest.raises(httpx.ReadTimeout):
        export(client, hour, hour, timeout=0.15)
    assert export(client, hour, hour).status_code == 200


def test_drop_closes_without_a_response(sim: Simulator, client: httpx.Client):
    sim.inject(Fault.drop())
    with pytest.raises(httpx.RemoteProtocolError):
        export(client, DAY, DAY)
    record = sim.export_requests()[-1]
    assert (record.status, record.bytes_sent, record.fault) == (None, 0, "drop")


def test_corrupt_is_200_with_a_body_that_is_not_a_zip(sim: Simulator, client: httpx.Client):
    sim.inject(Fault.corrupt())
    response = export(client, busy_hour(sim), busy_hour(sim))
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content) > 0
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(response.content))


def test_client_hanging_up_mid_download_is_quiet_and_harmless(
    sim: Simulator, client: httpx.Client, capfd: pytest.CaptureFixture[str]
):
    start, end = DAY, DAY + timedelta(days=3)
    for _ in range(3):
        with httpx.Client(base_url=sim.url, auth=client.auth) as http:
            params = {"start": stamp(start), "end": stamp(end)}
            with http.stream("GET", EXPORT, params=params) as response:
                next(response.iter_raw(1024))
    assert export(client, start, end).status_code == 200
    assert capfd.readouterr().err == ""


# -- request log -----------------------------------------------------------------------------


def test_request_log(sim: Simulator, client: httpx.Client):
    hour = busy_hour(sim)
    ok = export(client, hour, hour)
    client.get("/health")
    export(client, hour, hour, auth=("x", "y"))
    log = sim.requests
    assert [(r.method, r.path, r.status) for r in log] == [
        ("GET", EXPORT, 200),
        ("GET", "/health", 404),
        ("GET", EXPORT, 403),
    ]
    assert log[0].params == {"start": stamp(hour), "end": stamp(hour)}
    assert log[0].bytes_sent == len(ok.content)
    assert log[0].time <= log[1].time <= log[2].time
    assert [r.status for r in sim.export_requests()] == [200, 403]
    sim.reset_log()
    assert sim.requests == []


# -- command line ----------------------------------------------------------------------------


def test_command_line_serves_until_interrupted():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    # Generous bounds, not fixed waits: a busy machine starts Python slowly, a stuck one fails.
    lines = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        assert proc.stdout is not None
        first = lines.submit(proc.stdout.readline).result(timeout=120)
        url = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert url, first
        rest = "".join(lines.submit(proc.stdout.readline).result(timeout=30) for _ in range(3))
        assert "sim-api-key" in rest and "sim-secret-key" in rest
        response = httpx.get(
            f"{url[0]}{EXPORT}",
            params={"start": "20250701T00", "end": "20250701T02"},
            auth=("sim-api-key", "sim-secret-key"),
            timeout=60,
        )
        assert response.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        lines.shutdown(wait=False, cancel_futures=True)
    assert proc.returncode == 0
