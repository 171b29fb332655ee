"""The fault matrix, the archive: a bad archive or member fails its hour, clearly, landing nothing.

The simulator serves the real archive with one thing wrong (``Fault.cut_member`` and friends),
zip CRCs valid, on every request that covers the hour (``inject_always``): a bad hour at
Amplitude stays bad however often it is asked for. Each case re-fetches an hour that was loaded
before, so "nothing partial" means: the previous landing, Parquet file, rows and ledger row stay.
"""

from __future__ import annotations

import re

import pytest

from pipeline.amplitude.archive import MAX_INFLATION
from simulator import Fault
from tests.faults.conftest import (
    BUSY,
    H,
    assert_exact,
    assert_failed_cleanly,
    assert_no_leftovers,
    failures,
    hour_state,
)

MEMBER = f"'636686/636686_{BUSY:%Y-%m-%d}_{BUSY.hour}#1.json.gz'"  # the second member of BUSY

CASES = {  # fault on BUSY's second member -> what the failure must say
    "damaged-central-directory": (Fault.damaged_directory(hour=BUSY), [
        "failed after 3 attempts", "damaged zip archive",
        "Bad magic number for central directory"]),
    "cut-member": (Fault.cut_member(hour=BUSY, member=1), [
        f"archive member {MEMBER}", "cut short"]),
    "not-gzip": (Fault.not_gzip(hour=BUSY, member=1), [
        f"archive member {MEMBER}", "is not gzip data"]),
    "decompression-bomb": (Fault.bomb(hour=BUSY, member=1), [
        f"archive member {MEMBER}", "decompression bomb", f"limit of {MAX_INFLATION}x"]),
}
HOSTILE = {
    "dot-dot": "../x.json.gz",
    "absolute": "/etc/x.json.gz",
    "nul": f"636686/636686_{BUSY:%Y-%m-%d}_{BUSY.hour}#1.json.gz\x00../../x",
    "backslash": "636686\\..\\..\\x.json.gz",
    "newline": f"636686/636686_{BUSY:%Y-%m-%d}_{BUSY.hour}#1.json.gz\n",
}


def refetch_with(project, fault):
    """Re-fetch BUSY, loaded before, with ``fault`` on every request."""
    before = hour_state(project, BUSY)
    project.sim.inject_always(fault)
    return before, project.materialize(BUSY, raise_on_error=False, refetch=True)


@pytest.mark.parametrize("case", CASES)
def test_a_bad_archive_fails_the_hour_and_keeps_the_previous_load(loaded_project, case):
    fault, causes = CASES[case]
    before, result = refetch_with(loaded_project, fault)
    assert_failed_cleanly(loaded_project, result, BUSY, before, *causes)


@pytest.mark.parametrize("name", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_member_name_fails_the_hour_and_is_never_a_path(loaded_project, name):
    before, result = refetch_with(loaded_project, Fault.member_name(name, hour=BUSY, member=1))
    text = assert_failed_cleanly(loaded_project, result, BUSY, before, "unexpected archive member")
    assert repr(name)[1:-1] in text  # named as the archive spells it, escapes and all
    written = [p.name for p in loaded_project.root.rglob("*")]
    assert "x.json.gz" not in written and "x" not in written
    assert not any("\\" in n or "\n" in n for n in written)


def test_a_decompression_bomb_on_a_first_fetch_lands_nothing(fault_project):
    before = hour_state(fault_project, BUSY)
    fault_project.sim.inject_always(Fault.bomb(hour=BUSY))
    result = fault_project.materialize(BUSY, raise_on_error=False)
    assert_failed_cleanly(fault_project, result, BUSY, before, "decompression bomb")
    assert before.manifest is None and fault_project.lake.events_file(BUSY) is None


def test_a_member_that_keeps_failing_its_crc_is_named(loaded_project):
    good = loaded_project.sim.archive(BUSY, BUSY).path.read_bytes()
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF  # inside a member's data; the directory stays intact
    before, result = refetch_with(loaded_project, Fault.corrupt(bytes(damaged)))
    assert_failed_cleanly(loaded_project, result, BUSY, before, r"fails its CRC")


def test_a_malformed_line_fails_the_hour_naming_member_and_line(loaded_project):
    """The landing is a true copy of what Amplitude sent, so it lands (a parser fix or the
    quarantine mode re-reads it without a request); no Parquet file or row of it does."""
    fault_project = loaded_project
    before, result = refetch_with(fault_project, Fault.insert_line(
        b'{"uuid": "cut short', hour=BUSY, member=1, at=5))
    assert not result.success
    text = failures(result)
    assert f"upload hour {BUSY:%Y-%m-%dT%H}" in text
    assert f"member 636686_{BUSY:%Y-%m-%d}_{BUSY.hour}#1.json.gz" in text
    # The bad line is the sixth; DuckDB 1.5.5 numbers a file's first line 2, so it says 7.
    assert re.search(r"Malformed JSON in file .*, at byte \d+ in line [67]:", text)
    after = hour_state(fault_project, BUSY)
    assert (after.parquet, after.rows, after.ledger) == (before.parquet, before.rows,
                                                         before.ledger)
    assert after.manifest != before.manifest  # the new fetch's landing, for a re-read
    assert_no_leftovers(fault_project)


def test_a_blank_line_is_skipped(fault_project):
    fault_project.sim.inject_always(Fault.insert_line(b"", hour=BUSY, member=1, at=5),
                                    Fault.insert_line(b"  \t", hour=BUSY, member=0))
    assert fault_project.materialize(BUSY).success
    assert_exact(fault_project, BUSY)


@pytest.mark.xfail(strict=True, reason="normalize does not count blank lines yet: reported")
def test_a_blank_line_is_counted_in_metadata(fault_project):
    from assets.partitions import partition_key
    from tests.e2e.conftest import EVENTS_PARQUET, hour_metadata

    fault_project.sim.inject_always(Fault.insert_line(b"", hour=BUSY, member=1, at=5))
    result = fault_project.materialize(BUSY)
    assert hour_metadata(result, EVENTS_PARQUET)[partition_key(BUSY)]["blank_lines"] == 1


@pytest.mark.parametrize("fault", [
    Fault.bomb(hour=BUSY + H), Fault.damaged_directory(hour=BUSY + H),
    Fault.member_name("../x.json.gz", hour=BUSY + H),
], ids=["bomb", "damaged-central-directory", "hostile-name"])
def test_a_bad_hour_in_a_range_fails_only_that_hour(fault_project, fault):
    hours = [BUSY, BUSY + H, BUSY + 2 * H]
    bad = hours[1]
    before = hour_state(fault_project, bad)
    fault_project.sim.inject_always(fault)
    result = fault_project.materialize(hours[0], hours[-1], raise_on_error=False)
    assert_failed_cleanly(fault_project, result, bad, before)
    assert_exact(fault_project, hours[0], hours[2])
