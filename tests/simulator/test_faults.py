"""The simulator's newer faults, seen by a plain HTTP client and read back with the stdlib."""

from __future__ import annotations

import gzip
import io
import socket
import threading
import time
import zipfile
import zlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from simulator import Fault, HourProfile, Simulator, SimulatorConfig
from simulator.faults import PROXY_PAGE
from simulator.tamper import bomb, cut_gzip

DAY = datetime(2025, 7, 1, tzinfo=UTC)
H = timedelta(hours=1)
CONFIG = SimulatorConfig(profile=HourProfile(base=40), events_per_member=25)
BUSY = next(DAY + h * H for h in range(24) if CONFIG.hour_count(DAY + h * H) > 25)


@pytest.fixture
def sim():
    with Simulator(CONFIG) as simulator:
        yield simulator
        assert simulator.errors == []


def get(sim: Simulator, start: datetime, end: datetime | None = None, **kwargs) -> httpx.Response:
    params = {"start": f"{start:%Y%m%dT%H}", "end": f"{(end or start):%Y%m%dT%H}"}
    auth = (sim.config.api_key, sim.config.secret_key)
    with httpx.Client(base_url=sim.url, auth=auth, timeout=kwargs.pop("timeout", 10)) as http:
        return http.get("/api/2/export", params=params, **kwargs)


def entries(content: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        assert zf.testzip() is None  # every CRC is valid: the fault is inside a member
        return [(i.orig_filename, zf.read(i)) for i in zf.infolist() if not i.is_dir()]


def test_reset_sends_part_of_the_body_then_a_tcp_reset(sim):
    full = get(sim, BUSY).content
    sim.inject(Fault.reset(0.5))
    auth = (sim.config.api_key, sim.config.secret_key)
    received = 0
    with (
        httpx.Client(base_url=sim.url, auth=auth, timeout=5) as http,
        pytest.raises(httpx.ReadError, match="reset"),
        http.stream(
            "GET",
            "/api/2/export",
            params={"start": f"{BUSY:%Y%m%dT%H}", "end": f"{BUSY:%Y%m%dT%H}"},
        ) as r,
    ):
        assert r.status_code == 200 and int(r.headers["content-length"]) == len(full)
        for chunk in r.iter_raw():
            received += len(chunk)
    assert 0 < received < len(full)
    assert sim.export_requests()[-1].fault == "reset"
    assert get(sim, BUSY).content == full  # the next request is fine


def test_stall_stops_mid_body_until_the_client_gives_up(sim):
    full = get(sim, BUSY).content
    sim.inject(Fault.stall(0.5, seconds=30))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        get(sim, BUSY, timeout=0.3)
    assert time.monotonic() - started < 5
    record = sim.export_requests()[-1]
    assert record.status == 200 and record.bytes_sent == int(len(full) * 0.5)
    time.sleep(0.3)
    assert record.end is not None  # the server let go once the client hung up


def test_hang_answers_nothing_and_never_holds_up_stop():
    sim = Simulator(CONFIG).start()
    sim.inject(Fault.hang())
    sock = socket.create_connection(("127.0.0.1", sim.port))
    sock.sendall(b"GET /api/2/export?start=20250701T08&end=20250701T08 HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    started = time.monotonic()
    stopper = threading.Thread(target=sim.stop)
    stopper.start()
    stopper.join(5)
    assert not stopper.is_alive() and time.monotonic() - started < 3
    sock.close()


def test_hang_lets_go_when_the_client_does(sim):
    sim.inject(Fault.hang())
    with pytest.raises(httpx.ReadTimeout):
        get(sim, BUSY, timeout=0.2)
    time.sleep(0.3)
    record = sim.export_requests()[-1]
    assert record.fault == "hang" and record.status is None and record.end is not None
    assert get(sim, BUSY).status_code == 200


def test_html_is_a_200_page_instead_of_the_export(sim):
    sim.inject(Fault.html())
    response = get(sim, BUSY)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.content == PROXY_PAGE


def test_gzip_encoded_sends_the_same_zip_compressed(sim):
    full = get(sim, BUSY).content
    sim.inject(Fault.gzip_encoded())
    response = get(sim, BUSY)
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) == response.num_bytes_downloaded
    assert response.content == full  # httpx decoded it


def test_empty_archive_holds_no_member_even_for_an_hour_with_events(sim):
    sim.inject(Fault.empty_archive())
    response = get(sim, BUSY)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        assert [i.filename for i in zf.infolist()] == [f"{CONFIG.project_id}/"]


def test_damaged_directory_breaks_the_zip_but_not_its_members(sim):
    full = get(sim, BUSY).content
    sim.inject(Fault.damaged_directory())
    content = get(sim, BUSY).content
    assert len(content) == len(full)
    with pytest.raises(zipfile.BadZipFile, match="central directory"):
        zipfile.ZipFile(io.BytesIO(content))


def test_cut_member_reads_as_fewer_lines_without_an_error(sim):
    served = entries(get(sim, BUSY).content)
    sim.inject(Fault.cut_member(keep=3))
    (name, cut), *rest = entries(get(sim, BUSY).content)
    assert name == served[0][0] and rest == served[1:]
    inflater = zlib.decompressobj(31)
    data = inflater.decompress(cut)
    assert data == b"".join(gzip.decompress(served[0][1]).splitlines(keepends=True)[:3])
    assert not inflater.eof  # the stream never ended
    assert cut.endswith(b"\x00\x00\xff\xff")


def test_not_gzip_stores_the_lines_plain(sim):
    served = entries(get(sim, BUSY).content)
    sim.inject(Fault.not_gzip(member=1))
    changed = entries(get(sim, BUSY).content)
    assert changed[1] == (served[1][0], gzip.decompress(served[1][1]))
    assert changed[0] == served[0]


@pytest.mark.parametrize(
    "name",
    [
        "../x.json.gz",
        "/etc/x.json.gz",
        "636686_2025-07-01_8#0.json.gz\x00../../x",
        "636686\\..\\x.json.gz",
        "636686_2025-07-01_8#0.json.gz\n",
    ],
)
def test_member_name_is_written_exactly(sim, name):
    sim.inject(Fault.member_name(name))
    content = get(sim, BUSY).content
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        names = [i.orig_filename for i in zf.infolist() if not i.is_dir()]
    assert names[0] == name


def test_bomb_is_a_small_member_with_an_honest_trailer(sim):
    sim.inject(Fault.bomb(size=8 << 20))
    (_, data), *_ = entries(get(sim, BUSY).content)
    assert len(data) < (8 << 20) // 500
    assert int.from_bytes(data[-4:], "little") == 8 << 20
    assert gzip.decompress(data) == b"{}\n" * ((8 << 20) // 3) + b"{}\n"[: (8 << 20) % 3]
    assert bomb(8 << 20) is bomb(8 << 20)  # built once


def test_insert_line_adds_a_line_and_keeps_the_rest(sim):
    served = entries(get(sim, BUSY).content)
    sim.inject(Fault.insert_line(b"", at=2))
    changed = entries(get(sim, BUSY).content)
    before = gzip.decompress(served[0][1]).splitlines(keepends=True)
    assert gzip.decompress(changed[0][1]).splitlines(keepends=True) == [
        *before[:2],
        b"\n",
        *before[2:],
    ]


def test_member_faults_target_an_hour_and_persist_until_cleared(sim):
    other = BUSY + H
    sim.inject_always(Fault.not_gzip(hour=other))
    plain = get(sim, BUSY).content
    window = get(sim, BUSY, other).content
    again = get(sim, BUSY, other).content
    assert window == again
    hour_members = [(n, d) for n, d in entries(window) if f"_{other.hour}#" in n]
    assert not hour_members[0][1].startswith(b"\x1f\x8b")  # changed, every time
    assert all(d.startswith(b"\x1f\x8b") for n, d in entries(plain))  # hour not in the window
    assert [r.fault for r in sim.export_requests()] == [None, "not_gzip", "not_gzip"]
    sim.clear_faults()
    assert sim.persistent_faults == []
    assert all(d.startswith(b"\x1f\x8b") for _, d in entries(get(sim, BUSY, other).content))


def test_a_persistent_way_there_fault_yields_to_a_queued_one(sim):
    sim.inject_always(Fault.status(503))
    sim.inject(Fault.status(502))
    assert [get(sim, BUSY).status_code for _ in range(3)] == [502, 503, 503]


def test_cut_gzip_is_exactly_the_lines_without_an_end():
    data = b"".join(b'{"n": %d}\n' % i for i in range(1000))
    cut = cut_gzip(data)
    inflater = zlib.decompressobj(31)
    assert inflater.decompress(cut) == data and not inflater.eof
