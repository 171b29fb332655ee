"""AMPLITUDE_REJECTS=quarantine: lines that are not JSON objects go to amplitude._rejects."""

from __future__ import annotations

import gzip
from datetime import timedelta

from assets.partitions import partition_key
from tests.conftest import DAY, SMALL
from tests.e2e.conftest import (
    EVENTS_PARQUET,
    failure_text,
    hour_metadata,
    make_project,
    served_rows,
    warehouse_rows,
)

HOUR = DAY + timedelta(hours=8)
BAD_LINES = [b'{"uuid": "cut short', b"[1, 2, 3]", b"\xff\xfe not utf-8"]

quarantined = make_project(SMALL)


def spoil(project) -> tuple[str, list[int]]:
    """Append malformed lines (and a blank one) to the hour's first member; return the
    member's archive name and the bad lines' numbers."""
    landed = project.lake.landed(HOUR)
    path = project.lake.member_paths(landed)[0]
    with gzip.open(path, "rb") as source:
        count = sum(1 for _ in source)
    with gzip.open(path, "ab") as out:
        out.write(b"\n")
        for line in BAD_LINES:
            out.write(line + b"\n")
    return landed.members[0].name, [count + 2 + i for i in range(len(BAD_LINES))]


def test_quarantined_lines_land_in_rejects_and_every_good_row_loads(quarantined):
    project = quarantined
    assert project.materialize(HOUR).success
    member, numbers = spoil(project)
    project.extra_env["AMPLITUDE_REJECTS"] = "fail"
    failed = project.materialize(HOUR, raise_on_error=False)
    assert not failed.success  # the default: a malformed line fails the hour
    assert "does not fit the event schema" in failure_text(failed)

    project.extra_env["AMPLITUDE_REJECTS"] = "quarantine"
    result = project.materialize(HOUR)
    assert result.success
    assert hour_metadata(result, EVENTS_PARQUET)[partition_key(HOUR)]["rejected_lines"] == 3
    with project.warehouse() as con:
        assert warehouse_rows(con, HOUR) == served_rows(project.sim, HOUR)
        rejects = con.execute("SELECT upload_hour, member, line_number, line "
                              "FROM amplitude._rejects ORDER BY line_number").fetchall()
    assert [(r[1], r[2]) for r in rejects] == [(member, n) for n in numbers]
    assert [r[3] for r in rejects][:2] == ['{"uuid": "cut short', "[1, 2, 3]"]
    assert all(r[0] == HOUR for r in rejects)

    # A clean re-fetch clears the hour's quarantine in the same transaction as its rows.
    assert project.materialize(HOUR, refetch=True).success
    with project.warehouse() as con:
        assert con.execute("SELECT count(*) FROM amplitude._rejects").fetchone() == (0,)


def test_an_hour_of_garbage_is_damage_not_strays(quarantined):
    project = quarantined
    project.extra_env["AMPLITUDE_REJECTS"] = "quarantine"
    assert project.materialize(HOUR).success
    path = project.lake.member_paths(project.lake.landed(HOUR))[0]
    with gzip.open(path, "wb") as out:
        out.write(b"<html>not an export</html>\n" * 50)
    result = project.materialize(HOUR, raise_on_error=False)
    assert not result.success
    assert " 50 of " in failure_text(result)
    assert "that is damage, not stray lines" in failure_text(result)
    with project.warehouse() as con:
        assert warehouse_rows(con, HOUR) == served_rows(project.sim, HOUR)  # kept
