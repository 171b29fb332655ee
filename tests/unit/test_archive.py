import gzip
import io
import os
import random
import time
import uuid
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.amplitude.archive import (
    MAX_INFLATION,
    ArchiveError,
    ArchiveReader,
    MemberRefused,
    check_gzip,
    parse_member_name,
)
from pipeline.amplitude.export import Download
from pipeline.amplitude.landing import AmplitudeLake as Lake
from pipeline.hours import ExportWindow
from pipeline.lake import LakeError

HOUR = datetime(2026, 3, 1, 9, tzinfo=UTC)
H = timedelta(hours=1)
LINES = b"".join(b'{"uuid": "%d", "event_type": "viewed", "n": %d}\n' % (i, i * 7919)
                 for i in range(2000))


def payload(name):
    return gzip.compress(f"payload of {name}\n".encode(), mtime=0)


def make_zip(path, names, folder=True, contents=None):
    """A zip of gzip members named exactly ``names`` (a NUL too: zipfile would cut it off)."""
    contents = contents or {}
    with zipfile.ZipFile(path, "w") as archive:
        if folder:
            archive.writestr("636686/", b"")
        for name in names:
            info = zipfile.ZipInfo("x")
            info.filename = name
            archive.writestr(info, contents.get(name, payload(name)))
    return path


def test_member_names_parse_with_unpadded_hours_and_any_numbering():
    assert parse_member_name("636686/636686_2026-03-01_7#0.json.gz") == (
        636686, datetime(2026, 3, 1, 7, tzinfo=UTC), 0)
    assert parse_member_name("187520_2020-01-25_17#1.json.gz")[1:] == (
        datetime(2020, 1, 25, 17, tzinfo=UTC), 1)


@pytest.mark.parametrize("hostile", [
    "../636686_2026-03-01_7#0.json.gz",
    "/etc/636686_2026-03-01_7#0.json.gz",
    "636686/../../636686_2026-03-01_7#0.json.gz",
    "636686\\..\\636686_2026-03-01_7#0.json.gz",
    "636686_2026-03-01_7#0.json.gz/../../x",
    "notes.txt",
    "636686_2026-02-30_7#0.json.gz",
    "636686_2026-03-01_24#0.json.gz",
    "636686_2026-03-01_7#1.json.gz\x00../../../etc/x.json.gz",  # zipfile would read the head only
    "636686_2026-03-01_7#1.json.gz\n",
    "636686_2026-03-01_\u0667#1.json.gz",  # an Arabic-Indic 7: \\d would take it
    "C:\\636686_2026-03-01_7#1.json.gz",
    "636686_2026-03-01_7#0.json.gz",  # the same member twice (once in the folder)
])
def test_hostile_or_unknown_member_names_are_refused(tmp_path, hostile):
    path = make_zip(tmp_path / "a.zip", ["636686/636686_2026-03-01_7#0.json.gz", hostile])
    with pytest.raises(ArchiveError) as caught:
        ArchiveReader(path)
    assert caught.value.member == hostile


def test_a_hostile_name_refuses_the_whole_window_naming_it_and_lands_nothing(tmp_path):
    window = ExportWindow(HOUR, HOUR + 2 * H)
    names = ["636686/636686_2026-03-01_9#0.json.gz", "../636686_2026-03-01_10#0.json.gz"]
    path = make_zip(tmp_path / "a.zip", names)
    lake = Lake(tmp_path / "lake")
    with pytest.raises(ArchiveError) as caught:
        lake.land(Download(window, path, 1, 1, 0.1))
    message = str(caught.value)
    assert message.startswith("upload hours 2026-03-01T09..2026-03-01T11 "
                              "(export window 20260301T09..20260301T11): ")
    assert "'../636686_2026-03-01_10#0.json.gz'" in message
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".gz"]
    assert not (tmp_path / "636686_2026-03-01_10#0.json.gz").exists()


def test_members_sorted_by_hour_then_part_and_directory_entries_skipped(tmp_path):
    names = ["636686/636686_2026-03-01_10#1.json.gz", "636686/636686_2026-03-01_9#2.json.gz",
             "636686/636686_2026-03-01_9#1.json.gz"]
    with ArchiveReader(make_zip(tmp_path / "a.zip", names)) as reader:
        assert [m.name for m in reader] == [names[2], names[1], names[0]]
        assert [h.hour for h in reader.by_hour()] == [9, 10]


def test_not_a_zip_is_an_archive_error(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"<html>oops</html>")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        ArchiveReader(bad)


def test_landing_writes_only_inside_the_lake_and_supersedes_the_hour(tmp_path):
    lake = Lake(tmp_path / "lake", superseded_grace_seconds=0)
    window = ExportWindow(datetime(2026, 3, 1, 9, tzinfo=UTC), datetime(2026, 3, 1, 11, tzinfo=UTC))
    first = make_zip(tmp_path / "1.zip", ["636686/636686_2026-03-01_9#0.json.gz",
                                          "636686/636686_2026-03-01_9#1.json.gz"])
    landed = lake.land(Download(window, first, first.stat().st_size, 1, 0.5))
    assert [len(h.members) for h in landed] == [2, 0, 0]
    nine = lake.landed(window.first_hour)
    paths = lake.member_paths(nine)
    assert [p.name for p in paths] == ["636686_2026-03-01_9#0.json.gz",
                                       "636686_2026-03-01_9#1.json.gz"]
    assert paths[1].read_bytes() == payload("636686/636686_2026-03-01_9#1.json.gz")
    assert [m.name for m in nine.members] == ["636686/636686_2026-03-01_9#0.json.gz",
                                              "636686/636686_2026-03-01_9#1.json.gz"]
    # a re-fetch with fewer members: the manifest names only the new set
    second = make_zip(tmp_path / "2.zip", ["636686_2026-03-01_9#0.json.gz"], folder=False)
    for _ in range(3):
        lake.land(Download(window, second, second.stat().st_size, 2, 0.5))
    again = lake.landed(window.first_hour)
    assert [p.name for p in lake.member_paths(again)] == ["636686_2026-03-01_9#0.json.gz"]
    assert again.window_requests == 2 and again.version != nine.version
    folder = lake.landing_dir(window.first_hour)
    assert [p.name for p in folder.iterdir() if p.name.startswith("v")] == [again.version]
    assert not [p for p in (tmp_path / "lake").rglob("*") if ".staging-" in p.name
                or p.suffix == ".tmp"]
    assert all(str(p).startswith(str(tmp_path / "lake")) for p in (tmp_path / "lake").rglob("*"))


def test_members_outside_the_window_are_an_error(tmp_path):
    window = ExportWindow(datetime(2026, 3, 1, 9, tzinfo=UTC), datetime(2026, 3, 1, 9, tzinfo=UTC))
    path = make_zip(tmp_path / "a.zip", ["636686_2026-03-01_12#0.json.gz"])
    with pytest.raises(ArchiveError, match="outside it: 2026-03-01T12"):
        Lake(tmp_path / "lake").land(Download(window, path, 1, 1, 0.1))


def test_a_member_with_a_bad_crc_is_reported(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("636686_2026-03-01_9#0.json.gz", b"A" * 1000)
    data = bytearray(buffer.getvalue())
    data[data.index(b"AAAA") + 10] = ord("B")
    path = tmp_path / "crc.zip"
    path.write_bytes(bytes(data))
    window = ExportWindow(datetime(2026, 3, 1, 9, tzinfo=UTC), datetime(2026, 3, 1, 9, tzinfo=UTC))
    lake = Lake(tmp_path / "lake")
    with pytest.raises(ArchiveError, match="damaged"):
        lake.land(Download(window, path, len(data), 1, 0.1))
    with pytest.raises(LakeError, match="has not been landed"):
        lake.landed(window.first_hour)
    assert not list(lake.landing_dir(window.first_hour).iterdir())


def test_a_reader_never_sees_a_mix_of_two_landings(tmp_path):
    lake = Lake(tmp_path / "lake")
    hour = datetime(2026, 3, 1, 9, tzinfo=UTC)
    window = ExportWindow(hour, hour)
    archives = [make_zip(tmp_path / f"{n}.zip",
                         [f"636686_2026-03-01_9#{i}.json.gz" for i in range(n)]) for n in (2, 3)]
    lake.land(Download(window, archives[0], 1, 1, 0.1))

    def land(i):
        lake.land(Download(window, archives[i % 2], 1, 1, 0.1))

    def read(_):
        landed = lake.landed(hour)
        contents = [p.read_bytes() for p in lake.member_paths(landed)]
        return len(landed.members), len(contents)

    with ThreadPoolExecutor(4) as pool:
        landings = [pool.submit(land, i) for i in range(30)]
        reads = list(pool.map(read, range(200)))
        for landing in landings:
            landing.result()
    assert {n for n, _ in reads} <= {2, 3}
    assert all(n == read for n, read in reads)


def test_scratch_sweeps_a_killed_runs_folder_but_not_a_running_ones(tmp_path):
    lake = Lake(tmp_path / "lake")
    dead, alive = tmp_path / "lake" / ".scratch" / "dead", tmp_path / "lake" / ".scratch" / "alive"
    for folder in (dead, alive):
        folder.mkdir(parents=True)
        (folder / "export.zip").write_bytes(b"partial")
    day_ago = time.time() - 25 * 3600
    os.utime(dead, (day_ago, day_ago))
    with lake.scratch() as mine:
        assert sorted(p.name for p in mine.parent.iterdir()) == sorted(["alive", mine.name])
    assert not mine.exists()


def test_tidying_prunes_superseded_versions_and_a_killed_runs_leftovers_of_every_hour(tmp_path):
    """Not only when an hour is landed again: a run of any hours tidies all of them."""
    window = ExportWindow(datetime(2026, 3, 1, 9, tzinfo=UTC), datetime(2026, 3, 1, 9, tzinfo=UTC))
    archive = make_zip(tmp_path / "1.zip", ["636686_2026-03-01_9#0.json.gz"], folder=False)
    lake = Lake(tmp_path / "lake")  # the default grace: nothing is pruned while landing
    for _ in range(2):
        lake.land(Download(window, archive, archive.stat().st_size, 1, 0.5))
    folder = lake.landing_dir(window.first_hour)
    current = lake.landed(window.first_hour).version
    staging, temporary = folder / ".staging-vdead", folder / "._manifest.json.dead.tmp"
    staging.mkdir()
    temporary.write_text("{")
    fresh = folder / ".staging-vlive"  # a running run's: too young to sweep
    fresh.mkdir()
    day_ago = time.time() - 25 * 3600
    for path in (staging, temporary):
        os.utime(path, (day_ago, day_ago))
    assert len([p for p in folder.iterdir() if p.name.startswith("v")]) == 2
    later = Lake(tmp_path / "lake", superseded_grace_seconds=0)  # as if the grace had passed
    assert later.tidy("amplitude", "export") == 1
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [current, "_manifest.json", ".staging-vlive"])
    assert [p.name for p in lake.member_paths(lake.landed(window.first_hour))] == [
        "636686_2026-03-01_9#0.json.gz"]


# ---- gzip members: what their first and last bytes can tell, at no extra pass ----

def test_a_whole_member_passes():
    data = gzip.compress(LINES, mtime=0)
    assert check_gzip(data[:16], data[-8:], len(data)) is None
    empty = gzip.compress(b"", mtime=0)
    assert check_gzip(empty[:16], empty[-8:], len(empty)) is None


def test_a_member_that_is_not_gzip_is_refused():
    assert "is not gzip" in check_gzip(LINES[:16], LINES[-8:], len(LINES))
    assert "is not gzip" in check_gzip(b"\x1f\x8b\x08", b"", 3)  # too short to be one
    odd = bytearray(gzip.compress(LINES))
    odd[3] |= 0x80
    assert "reserved flags" in check_gzip(bytes(odd[:16]), bytes(odd[-8:]), len(odd))


def test_a_member_cut_at_a_flush_point_is_refused():
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    cut = compressor.compress(LINES) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert "cut short" in check_gzip(cut[:16], cut[-8:], len(cut))


def test_a_member_cut_anywhere_shows_no_trailer_when_the_member_is_small():
    whole = gzip.compress(LINES, mtime=0)
    refused = 0
    for cut in range(len(whole) // 2, len(whole) - 8, 7):
        data = whole[:cut]
        refused += check_gzip(data[:16], data[-8:], len(data)) is not None
    assert refused / len(range(len(whole) // 2, len(whole) - 8, 7)) > 0.97


def test_a_bomb_with_an_honest_trailer_is_refused_and_a_real_ratio_is_not():
    bomb = gzip.compress(b"{}\n" * (4 << 20), 9)
    problem = check_gzip(bomb[:16], bomb[-8:], len(bomb))
    assert "decompression bomb" in problem and f"limit of {MAX_INFLATION}x" in problem
    # as repetitive as lines can get: one 1 KB event again and again, only a counter changing
    # (no real line is this poor: each has a random uuid, an insert id and timestamps)
    line = b'{"event_properties": {%s}, "uuid": "%%d"}\n' % b", ".join(
        b'"p%d": "v%d"' % (i, i) for i in range(60))
    repetitive = gzip.compress(b"".join(line % i for i in range(20_000)), 9)
    ratio = int.from_bytes(repetitive[-4:], "little") / len(repetitive)
    assert 100 < ratio < MAX_INFLATION  # about 137:1
    assert check_gzip(repetitive[:16], repetitive[-8:], len(repetitive)) is None
    rng = random.Random(1)
    real = gzip.compress(b"".join(line.replace(b"%d", b"%s") % str(uuid.UUID(
        int=rng.getrandbits(128))).encode() for _ in range(20_000)), 9)
    assert int.from_bytes(real[-4:], "little") / len(real) < 40  # with a random uuid


def test_a_large_member_passes_whatever_its_trailer_claims():
    """Past 16 MiB every ISIZE fits the limit (it wraps at 4 GiB): the check cannot speak."""
    head = gzip.compress(b"x")[:16]
    assert check_gzip(head, b"\0\0\0\0\xff\xff\xff\xff", (1 << 32) // MAX_INFLATION) is None


def land_one_hour(tmp_path, content, window=None):
    window = window or ExportWindow(HOUR, HOUR)
    name = "636686/636686_2026-03-01_9#0.json.gz"
    path = make_zip(tmp_path / "a.zip", [name], contents={name: content})
    return Lake(tmp_path / "lake").land(Download(window, path, 1, 1, 0.1))


@pytest.mark.parametrize("content, cause", [
    (LINES, "is not gzip data"),
    (gzip.compress(b"{}\n" * (4 << 20), 9), "decompression bomb"),
    (zlib.compressobj(6, zlib.DEFLATED, 31).compress(LINES * 20)[:40_000], "a gzip trailer"),
], ids=["not-gzip", "bomb", "cut"])
def test_a_refused_member_names_hour_and_member_and_lands_nothing(tmp_path, content, cause):
    window = ExportWindow(HOUR - H, HOUR + H)
    lake = Lake(tmp_path / "lake")
    before = make_zip(tmp_path / "before.zip", ["636686_2026-03-01_8#0.json.gz"], folder=False)
    lake.land(Download(window, before, 1, 1, 0.1))
    manifests = {h: lake.manifest(lake.landing_dir(h)) for h in window.hours}
    with pytest.raises(MemberRefused) as caught:
        land_one_hour(tmp_path, content, window)
    message = str(caught.value)
    assert message.startswith("upload hour 2026-03-01T09: archive member "
                              "'636686/636686_2026-03-01_9#0.json.gz' ")
    assert cause in message
    assert caught.value.upload_hours == (HOUR,)
    assert caught.value.member == "636686/636686_2026-03-01_9#0.json.gz"
    # every hour of the window keeps its landing: the good hours before it too
    assert {h: lake.manifest(lake.landing_dir(h)) for h in window.hours} == manifests
    for hour in window.hours:
        folder = lake.landing_dir(hour)
        assert [p.name for p in folder.iterdir() if p.name.startswith(("v", ".staging"))] == [
            lake.landed(hour).version]


def test_a_zip_entry_that_inflates_too_far_in_the_zip_itself_is_refused(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("636686_2026-03-01_9#0.json.gz", b"\0" * (8 << 20))
    with pytest.raises(ArchiveError, match=r"would inflate .* in the zip"):
        ArchiveReader(path, ExportWindow(HOUR, HOUR))


def test_an_encrypted_entry_is_refused(tmp_path):
    path = make_zip(tmp_path / "a.zip", ["636686_2026-03-01_9#0.json.gz"], folder=False)
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 0x1  # the directory's flag bits say "encrypted"
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="encrypted"):
        ArchiveReader(path)


def test_landing_some_hours_of_an_archive_leaves_the_others_alone(tmp_path):
    window = ExportWindow(HOUR, HOUR + H)
    path = make_zip(tmp_path / "a.zip", ["636686_2026-03-01_9#0.json.gz",
                                         "636686_2026-03-01_10#0.json.gz"])
    lake = Lake(tmp_path / "lake")
    landed = lake.land(Download(window, path, 1, 1, 0.1), hours={HOUR + H})
    assert [h.upload_hour for h in landed] == [HOUR + H]
    assert lake.manifest(lake.landing_dir(HOUR)) is None
