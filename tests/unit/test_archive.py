import io
import os
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from pipeline.amplitude.archive import ArchiveError, ArchiveReader, parse_member_name
from pipeline.amplitude.export import Download
from pipeline.amplitude.landing import AmplitudeLake as Lake
from pipeline.hours import ExportWindow
from pipeline.lake import LakeError


def make_zip(path, names, folder=True):
    with zipfile.ZipFile(path, "w") as archive:
        if folder:
            archive.writestr("636686/", b"")
        for name in names:
            archive.writestr(name, f"payload of {name}".encode())
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
])
def test_hostile_or_unknown_member_names_are_refused(tmp_path, hostile):
    path = make_zip(tmp_path / "a.zip", ["636686/636686_2026-03-01_7#0.json.gz", hostile])
    with pytest.raises(ArchiveError):
        ArchiveReader(path)


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
    assert paths[1].read_bytes() == b"payload of 636686/636686_2026-03-01_9#1.json.gz"
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
