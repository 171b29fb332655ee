"""The canonical id of a merged user, as the warehouse's views define it (``identity_merges``,
``user_identity``), on merge rows written by hand: Amplitude's meaning of a row is "amplitude_id
was merged into merged_amplitude_id, the user's original id" (shared/reference:
amplitude-storage-export.md)."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import amplitude_warehouse

T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


def merge(con, amplitude_id, merged_into, seconds=0, schema="amplitude"):
    at = T0 + timedelta(seconds=seconds)
    con.execute(f"INSERT INTO {schema}.merge_ids VALUES (-1, ?, ?, ?, ?, ?, 'by hand')",
                [at, at, amplitude_id, merged_into, at.replace(minute=0)])


def canonical(con, schema="amplitude"):
    return dict(con.execute(f"SELECT amplitude_id, canonical_amplitude_id FROM "
                            f"{schema}.user_identity").fetchall())


@pytest.fixture(params=["file", "ducklake"])
def warehouse(request, tmp_path):
    if request.param == "file":
        return amplitude_warehouse(tmp_path / "w.duckdb")
    return amplitude_warehouse(tmp_path / "w.duckdb", catalog=f"ducklake:{tmp_path}/c.ducklake",
                               data_path=str(tmp_path / "data"))


def test_a_chain_is_followed_to_the_original_id(warehouse):
    with warehouse.connect() as con:
        merge(con, 2, 1)  # 2 merged into 1
        merge(con, 3, 2, seconds=5)  # then 3 into 2: 3's user is 1's
        merge(con, 4, 3, seconds=9)
        assert canonical(con) == {1: 1, 2: 1, 3: 1, 4: 1}
        assert dict(con.execute("SELECT amplitude_id, merged FROM amplitude.user_identity"
                                ).fetchall()) == {1: False, 2: True, 3: True, 4: True}


def test_ids_never_merged_are_their_own_canonical_id(warehouse):
    with warehouse.connect() as con:
        con.execute("INSERT INTO amplitude.events (amplitude_id, uuid, _upload_hour) VALUES "
                    "(7, 'a', ?), (8, 'b', ?), (8, 'c', ?), (NULL, 'd', ?)", [T0] * 4)
        merge(con, 8, 70)
        assert canonical(con) == {7: 7, 8: 70, 70: 70}


def test_a_cycle_ends_at_its_least_id_for_every_id_on_it_or_leading_into_it(warehouse):
    with warehouse.connect() as con:
        merge(con, 20, 21)
        merge(con, 21, 22, seconds=1)
        merge(con, 22, 20, seconds=2)  # back to 20: a cycle Amplitude should never write
        merge(con, 30, 22, seconds=3)  # and an id that leads into it
        assert canonical(con) == {20: 20, 21: 20, 22: 20, 30: 20}


def test_an_id_merged_twice_counts_its_first_merge_and_a_self_merge_nothing(warehouse):
    with warehouse.connect() as con:
        merge(con, 50, 52, seconds=10)
        merge(con, 50, 51, seconds=1)
        merge(con, 60, 60)
        assert canonical(con) == {50: 51, 51: 51, 52: 52, 60: 60}
        assert con.execute("SELECT count(*) FROM amplitude.identity_merges "
                           "WHERE amplitude_id = 60").fetchone() == (0,)


def test_the_all_projects_view_keeps_each_project_to_its_own_merges(tmp_path):
    from pipeline.source import Project
    from pipeline.warehouse import Warehouse

    warehouse = Warehouse(tmp_path / "w.duckdb", projects=[
        Project.named("amplitude", "default"), Project.named("amplitude", "web")])
    with warehouse.connect() as con:
        merge(con, 2, 1)
        merge(con, 2, 9, schema="amplitude_web")
        assert sorted(con.execute("SELECT project, amplitude_id, canonical_amplitude_id FROM "
                                  "amplitude_all.user_identity").fetchall()) == [
            ("default", 1, 1), ("default", 2, 1), ("web", 2, 9), ("web", 9, 9)]
