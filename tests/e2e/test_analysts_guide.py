"""docs/analysts.md can neither rot nor mislead: every SQL block in it runs against the demo's
data and its result equals what Python computes from the events, cohorts, taxonomy and counts
the simulator served. Each block is tagged ``<!-- check: NAME -->`` and ``CHECKS[NAME]`` holds
its expected result; a block without a check, or a check without a block, fails. The blocks
about several projects and about Mixpanel run on copies of the demo's warehouse with a second
Amplitude project (test_analytics_projects.py) or Mixpanel events added (``RUNS_ON``).

Queries run with the session's zone far from UTC (a reader's zone must change no figure),
through Python's DuckDB and through the ``duckdb-cli`` package's CLI, read-only.
"""

import csv
import io
import json
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.analytics import build_analytics_assets
from pipeline.source import Project
from pipeline.warehouse import Warehouse
from resources import WarehouseResource
from resources.storage import WarehouseProject
from tests.conftest import AMPLITUDE
from tests.e2e.test_analyst_cli import duckdb_cli
from tests.e2e.test_analytics import Built, demo_build, shared_dir
from tests.e2e.test_analytics_projects import TwoProjects, two  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"
BLOCK = re.compile(r"(?:<!-- check: (\w+) -->\s*\n)?```sql\n(.*?)```", re.DOTALL)
D = date(2026, 3, 1)
READER_ZONE = "Pacific/Kiritimati"  # UTC+14: any date taken in the session's zone moves
COPY = "/tmp/my-warehouse.duckdb"
MIXPANEL = Project.named("mixpanel", "default")
# The blocks that need more than the demo's one Amplitude project: the fixture they run on.
RUNS_ON = {"projects": "two", "mixpanel_join": "with_mixpanel"}


def blocks() -> dict[str, str]:
    found = BLOCK.findall(GUIDE.read_text())
    untagged = [sql[:60] for name, sql in found if not name]
    assert not untagged, f"SQL blocks in {GUIDE.name} without a check: {untagged}"
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), names
    return {name: sql for name, sql in found}


@pytest.fixture(scope="module")
def built(tmp_path_factory, worker_id) -> Iterator[Built]:
    with demo_build(shared_dir(tmp_path_factory, worker_id)) as data:
        assert data.results["analytics"] and data.results["snapshots"]
        yield data


@dataclass
class WithMixpanel:
    """A copy of the demo's warehouse with a Mixpanel project whose events are Amplitude's users'
    (``planted``: insert_id, user_id, time), a millisecond after one of their Amplitude events,
    and the models of both sources built."""

    demo: Built
    path: Path
    planted: list[tuple[str, str, datetime]]


@pytest.fixture(scope="module")
def with_mixpanel(built, tmp_path_factory) -> WithMixpanel:
    ref = built.reference
    known = sorted((e for e in ref.events if e.get("user_id")),
                   key=lambda e: (e["event_time"], e["uuid"]))[::7][:40]
    assert len(known) >= 10
    planted = [(f"mp-{i}", e["user_id"], e["event_time"] + timedelta(milliseconds=1))
               for i, e in enumerate(known)]
    path = tmp_path_factory.mktemp("with-mixpanel") / built.path.name
    shutil.copyfile(built.path, path)
    projects = [AMPLITUDE, MIXPANEL]
    with Warehouse(path, projects=projects).connect() as con:  # creates schema mixpanel
        con.executemany(
            "INSERT INTO mixpanel.events (event, distinct_id, insert_id, time, time_raw, "
            "user_id, _day) VALUES ('Page Viewed', ?, ?, ?, epoch(?::TIMESTAMPTZ), ?, "
            "CAST(?::TIMESTAMPTZ AT TIME ZONE 'UTC' AS DATE))",
            [[user, insert_id, at, at, user, at] for insert_id, user, at in planted])
    warehouse = WarehouseResource(path=str(path), projects=[
        WarehouseProject(source=p.source, name=p.name, timezone=p.timezone) for p in projects])
    with dg.instance_for_test() as instance:
        assert dg.materialize(build_analytics_assets(projects),
                              resources={"warehouse": warehouse}, instance=instance).success
    return WithMixpanel(built, path, planted)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def on(b: Built, day: date = D, event_type: str | None = None) -> list[dict]:
    ref = b.reference
    return [e for e in ref.events if ref.day(e["event_time"]) == day
            and (event_type is None or e["event_type"] == event_type)]


def money(values) -> Decimal:
    return sum((Decimal(str(v)) for v in values), Decimal("0.00"))


# ---- what each block must return, from what the simulator served ----

def check_projects(b: TwoProjects, got: list[tuple]) -> None:
    """On the demo's project and a second one ("web", in Kolkata, twelve of its hours)."""
    refs = b.references
    want = [(d, project, refs[project].dau[d]) for d in days(date(2026, 2, 28), D)
            for project in sorted(refs) if d in refs[project].dau]
    assert got == want and len(got) == 4
    assert got[-1][2] != got[-2][2]  # two projects, two counts

def check_dau(b: Built, got: list[tuple]) -> None:
    assert got == [(d, b.reference.dau[d]) for d in days(date(2026, 2, 25), D)]
    assert got[-1][1] > 1000


def check_top_events(b: Built, got: list[tuple]) -> None:
    counts = b.reference.event_counts
    ranked = sorted(((t, n, u) for (d, t), (n, u) in counts.items() if d == D),
                    key=lambda r: (-r[1], r[0]))
    assert got == ranked[:5]


def check_funnel(b: Built, got: list[tuple]) -> None:
    steps = ["page_view", "add_to_cart", "purchase"]
    users = b.reference.funnel(steps, D, D)
    assert [(s, t, n) for s, t, n, _ in got] == [
        (i, t, n) for i, (t, n) in enumerate(zip(steps, users, strict=True), 1)]
    assert [c for *_, c in got] == [pytest.approx(n / users[0], abs=5e-5) for n in users]
    assert users[2] > 0


def check_retention(b: Built, got: list[tuple]) -> None:
    ref = b.reference
    first, last = date(2026, 2, 20), date(2026, 2, 22)
    want = ref.retention("_active", "_active", first, last, 7)
    rows = sorted((c, u, r) for (c, n), (u, r) in want.items() if n == 7)
    assert [(c, u, r) for c, u, r, _, _ in got] == rows
    for c, u, r, share, complete in got:
        assert share == pytest.approx(r / u, abs=5e-5)
        assert complete == (c + timedelta(days=7) <= max(ref.dates))
    assert any(r for _, _, r, _, _ in got), "nobody retained: a weak example"


def check_breakdown(b: Built, got: list[tuple]) -> None:
    plans: dict[str, list[dict]] = defaultdict(list)
    for e in on(b, event_type="purchase"):
        plans[e["user_properties"]["plan"]].append(e)
    want = sorted(((plan, len({e["amplitude_id"] for e in es}), len(es),
                    money(e["event_properties"]["price"] for e in es))
                   for plan, es in plans.items()), key=lambda r: -r[3])
    assert got == want and len(got) == 3


def check_json_purchases(b: Built, got: list[tuple]) -> None:
    events = on(b, event_type="purchase")
    assert got == [("EUR", len(events), money(e["event_properties"]["price"] for e in events),
                    sum(e["event_properties"]["quantity"] for e in events))]


def check_json_keys(b: Built, got: list[tuple]) -> None:
    events = on(b, event_type="[Amplitude] Revenue")
    props = [e["event_properties"] for e in events]
    assert got == [(len(events), money(p["$revenue"] for p in props),
                    len({p["$productId"] for p in props}),
                    sum(1 for p in props if p["nested"]["inner"]["tags"][2] == "🙂"))]
    assert got[0][3] > 0


def check_cohort(b: Built, got: list[tuple]) -> None:
    cohorts = b.served("/api/3/cohorts")["cohorts"]
    active = {e["amplitude_id"] for e in on(b)}
    events: dict[int, int] = defaultdict(int)
    for e in on(b):
        events[e["amplitude_id"]] += 1
    want = []
    for cohort in cohorts:
        if cohort["archived"]:
            continue  # not downloaded by default
        text = b"".join(b.sim.cohort_csv(cohort["id"])).decode()
        members = {int(row[0]) for row in list(csv.reader(io.StringIO(text)))[1:]}
        if members:
            want.append((cohort["name"], len(members), len(members & active),
                         sum(events[a] for a in members)))
    assert sorted(got, key=lambda r: -r[1]) == sorted(want, key=lambda r: -r[1])
    assert got == sorted(got, key=lambda r: -r[1]) and all(r[2] for r in got)


def plan(b: Built) -> dict[str, str]:
    served = b.served("/api/2/taxonomy/event", showDeleted="true")["data"]
    return {item["event_type"]: item["category"]["name"] for item in served}


def check_taxonomy(b: Built, got: list[tuple]) -> None:
    categories = plan(b)
    types: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for e in on(b):
        if e["event_type"] in categories:
            types[categories[e["event_type"]]].add(e["event_type"])
            counts[categories[e["event_type"]]] += 1
    assert sorted(got, key=lambda r: r[0]) == sorted(
        (c, len(types[c]), counts[c]) for c in counts)
    assert [r[2] for r in got] == sorted((r[2] for r in got), reverse=True)


def check_taxonomy_gaps(b: Built, got: list[tuple]) -> None:
    known = plan(b)
    assert got == [(t,) for t in {e["event_type"] for e in b.reference.events} - set(known)]


def check_late(b: Built, got: list[tuple]) -> None:
    buckets: dict[str, int] = defaultdict(int)
    for e in b.reference.events:
        late = e["server_upload_time"] - e["event_time"]
        buckets["1: under an hour" if late < timedelta(hours=1) else
                "2: under a day" if late < timedelta(days=1) else
                "3: under a week" if late < timedelta(days=7) else "4: a week or more"] += 1
    total = sum(buckets.values())
    assert [(a, n) for a, n, _ in got] == sorted(buckets.items())
    assert [p for *_, p in got] == [pytest.approx(100 * n / total, abs=0.005)
                                   for _, n in sorted(buckets.items())]
    assert len(got) == 4


def check_sessions(b: Built, got: list[tuple]) -> None:
    ref = b.reference
    per_user, average = ref.sessions_per_user(), ref.average_session_length()
    want = [(d, per_user[d][0], per_user[d][1]) for d in days(date(2026, 2, 27), D)]
    assert [(d, n, u) for d, n, u, _, _ in got] == want
    for d, _, _, ratio, seconds in got:
        assert ratio == pytest.approx(per_user[d][2], abs=5e-4)
        assert seconds == pytest.approx(average[d][1], abs=0.05)


def check_session_bins(b: Built, got: list[tuple]) -> None:
    binned = b.reference.binned()
    labels = ["0s-3s", "3s-10s", "10s-30s", "30s-1m", "1m-3m", "3m-10m", "10m-30m", "30m-1h",
              "1h-24h"]
    assert got == [(label, binned[(D, i)]) for i, label in enumerate(labels, 1)]


def check_reconciliation(b: Built, got: list[tuple]) -> None:
    ref = b.reference
    window = {"start": "20260225", "end": "20260301", "i": "1"}
    active = b.served("/api/2/users", m="active", **window)["data"]["series"][0]
    new = b.served("/api/2/users", m="new", **window)["data"]["series"][0]
    totals = b.served("/api/2/events/segmentation", e='{"event_type": "_all"}', m="totals",
                      **window)["data"]["series"][0]
    want = [("default", d, ref.dau[d], a, ref.new_users[d], n, ref.totals(d), t, True)
            for d, a, n, t in zip(days(date(2026, 2, 25), D), active, new, totals, strict=True)]
    assert got == want


def check_copy(b: Built, con: duckdb.DuckDBPyConnection) -> None:
    assert con.execute("SELECT count(*) FROM analytics.events_unique").fetchall() == [
        (len(b.reference.events),)]
    assert con.execute("SELECT project, users FROM analytics.funnel(['page_view'], "
                       "DATE '2026-03-01', DATE '2026-03-01')").fetchall() == [
        ("default", b.reference.funnel(["page_view"], D, D)[0])]


def check_mixpanel_join(b: WithMixpanel, got: list[tuple]) -> None:
    ref = b.demo.reference
    latest = {}
    for insert_id, user, at in b.planted:
        latest[insert_id] = max(e["event_time"] for e in ref.events
                                if e.get("user_id") == user and e["event_time"] <= at)
    want = sorted(((user, at, latest[insert_id]) for insert_id, user, at in b.planted),
                  key=lambda r: (r[1], r[0]))
    assert [(r[0], r[2], r[4]) for r in got] == want
    assert {r[1] for r in got} == {"Page Viewed"}


CHECKS: dict[str, Callable] = {
    name.removeprefix("check_"): fn for name, fn in list(globals().items())
    if name.startswith("check_") and callable(fn)}


def test_every_sql_block_has_a_check_and_every_check_a_block():
    found = blocks()
    assert set(found) == set(CHECKS)
    assert len(found) >= 10


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_guide_query_returns_what_the_simulator_served(built, name, tmp_path, request):
    sql = blocks()[name].replace("data/warehouse.duckdb", str(built.path))
    if name == "copy":
        copy = tmp_path / "copy.duckdb"
        with duckdb.connect() as con:
            con.execute(sql.replace(COPY, str(copy)))
            check_copy(built, con)
        return
    target = request.getfixturevalue(RUNS_ON[name]) if name in RUNS_ON else built
    with duckdb.connect(str(target.path), read_only=True) as con:
        con.execute(f"SET TimeZone = '{READER_ZONE}'")
        got = con.execute(sql).fetchall()
    CHECKS[name](target, got)
    # the analyst's CLI (another DuckDB build) reads the same views and macros
    done = subprocess.run([str(duckdb_cli()), "-readonly", str(target.path), "-json", "-c", sql],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(json.loads(done.stdout or "[]")) == len(got)
