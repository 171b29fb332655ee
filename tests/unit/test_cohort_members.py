"""The cohort download against the real simulator over HTTP: request -> polls -> 302 -> a storage
host that refuses Amplitude's credentials -> gzip CSV; the bounded wait, expired links, the
monthly quota, carrying an unchanged cohort forward, and malformed files, with real DuckDB and
Parquet in tmp_path."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from pipeline import engine
from pipeline.amplitude import cohort_members as cm
from pipeline.amplitude.client import AmplitudeClient
from pipeline.amplitude.cohorts import fetch_cohorts
from pipeline.http import RetryPolicy, Timeouts
from pipeline.lake import Lake
from pipeline.snapshots import Snapshots
from simulator import Cohort, Simulator, SimulatorConfig
from tests.conftest import amplitude_warehouse

FAST = cm.Polling(timeout_seconds=10, first_seconds=0.01, max_seconds=0.05)
COHORTS = (
    Cohort("k3x9qpl", "Purchasers (30 days)", 1_200),
    Cohort("n3wsl7r", "Newsletter sign-ups", 60),
    Cohort("ch4rn0x", "Churn risk", 80, archived=True),
    Cohort("e0mpty1", "Nobody yet", 0),
)
CONFIG = SimulatorConfig(cohorts=COHORTS, cohort_polls_before_complete=2)
TODAY = datetime.now(UTC).date()


def start(config: SimulatorConfig = CONFIG) -> Simulator:
    return Simulator(config).start()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = start()
    yield simulator
    simulator.stop()
    assert simulator.errors == []


def client_for(sim: Simulator, gate=None) -> AmplitudeClient:
    extra = {} if gate is None else {"gate": gate}
    return AmplitudeClient(sim.url, sim.config.api_key, sim.config.secret_key,
                           timeouts=Timeouts(2, 10), seed=1,
                           retry=RetryPolicy(max_attempts=3, base_delay_seconds=0.01), **extra)


def served(sim: Simulator, cohort_id: str, props: tuple[str, ...] = ()) -> list[list[str]]:
    """What the simulator serves for the cohort now, parsed independently of the pipeline."""
    text = b"".join(sim.cohort_csv(cohort_id, props)).decode()
    return list(csv.reader(io.StringIO(text)))


def read_csv_file(path: Path) -> list[list[str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as text:
        return list(csv.reader(text))


def api_requests(sim: Simulator, prefix: str = "/api/5/"):
    return [r for r in sim.requests if r.path.startswith(prefix)]


# ---- one download -------------------------------------------------------------------------

def test_a_download_polls_then_follows_the_302_without_credentials(sim, tmp_path):
    cohort = cm.Cohort("k3x9qpl", "Purchasers (30 days)", sim.last_computed("k3x9qpl"))
    with client_for(sim) as client:
        entry = cm.download(client, cohort, tmp_path, props=("country", "gp:plan"), polling=FAST)
    saved = tmp_path / entry["file"]
    assert read_csv_file(saved) == served(sim, "k3x9qpl", ("country", "gp:plan"))
    assert entry["request_id"] and entry["carried_forward"] is False
    assert entry["bytes"] == saved.stat().st_size and entry["props"] == ["country", "gp:plan"]
    log = [(r.host, r.path.rsplit("/", 1)[0], r.status) for r in sim.requests]
    assert log == [
        ("api", "/api/5/cohorts/request", 202),
        ("api", "/api/5/cohorts/request-status", 202),
        ("api", "/api/5/cohorts/request-status", 202),
        ("api", "/api/5/cohorts/request-status", 200),
        ("api", f"/api/5/cohorts/request/{entry['request_id']}", 302),
        ("storage", f"/amplitude-cohort-downloads/{sim.config.project_id}", 200),
    ]
    assert entry["requests"] == 5  # the storage GET follows the 302 inside one request
    assert sim.requests[0].params["props"] == "1"
    # the storage host really refuses Amplitude's Authorization header, so the 200 above proves
    # the client dropped it across hosts
    auth = (sim.config.api_key, sim.config.secret_key)
    location = httpx.get(f"{sim.url}/api/5/cohorts/request/{entry['request_id']}/file",
                         auth=auth).headers["location"]
    refused = httpx.get(location, auth=auth)
    assert refused.status_code == 403 and "auth mechanism" in refused.text


@pytest.mark.parametrize("inline, encoded", [(True, True), (True, False), (False, False)])
def test_the_file_in_the_body_or_as_plain_gzip_bytes(tmp_path, inline, encoded):
    config = replace(CONFIG, cohort_inline_max_members=5_000 if inline else 0,
                     cohort_content_encoding=encoded)
    with start(config) as sim, client_for(sim) as client:
        cohort = cm.Cohort("n3wsl7r", "Newsletter sign-ups", sim.last_computed("n3wsl7r"))
        entry = cm.download(client, cohort, tmp_path, polling=FAST)
        assert read_csv_file(tmp_path / entry["file"]) == served(sim, "n3wsl7r")
        # raw gzip bytes stay gzip on disk; a Content-Encoding body arrives decoded
        assert entry["file"].endswith(".csv" if encoded else ".csv.gz")
        assert [r.host for r in sim.requests].count("storage") == (0 if inline else 1)


def test_a_job_that_never_completes_fails_naming_the_cohort(tmp_path):
    config = replace(CONFIG, cohort_jobs_never_complete=True)
    polling = cm.Polling(timeout_seconds=0.3, first_seconds=0.02, max_seconds=0.08)
    with start(config) as sim, client_for(sim) as client:
        cohort = cm.Cohort("n3wsl7r", "Newsletter sign-ups", 1)
        with pytest.raises(cm.CohortError) as raised:
            cm.download(client, cohort, tmp_path, polling=polling)
        polls = [r for r in sim.requests if "request-status" in r.path]
    message = str(raised.value)
    assert "n3wsl7r" in message and "Newsletter sign-ups" in message
    assert "not completed after 0.0 minutes" in message and "bound is 0.005 minutes" in message
    # capped exponential backoff: 0.02, 0.04, 0.08, 0.08 ... within 0.3 s
    assert 3 <= len(polls) <= 6
    assert not any(r.path.endswith("/file") for r in sim.requests)


def test_an_expired_link_gets_one_fresh_request(tmp_path):
    """The storage's first link is already expired; after that refusal, links live a minute."""
    config = replace(CONFIG, storage_link_ttl_seconds=0)
    with start(config) as sim:

        def heal(endpoint: str, cost: float):
            if any(r.host == "storage" and r.status == 403 for r in sim.requests):
                sim.config = replace(sim.config, storage_link_ttl_seconds=60)
            return nullcontext()

        with client_for(sim, gate=heal) as client:
            cohort = cm.Cohort("n3wsl7r", "Newsletter sign-ups", sim.last_computed("n3wsl7r"))
            entry = cm.download(client, cohort, tmp_path, polling=FAST)
        storage = [r.status for r in sim.requests if r.host == "storage"]
        assert storage == [403, 200]
        assert read_csv_file(tmp_path / entry["file"]) == served(sim, "n3wsl7r")
        assert entry["requests"] == 6


def test_a_link_that_stays_expired_fails_naming_the_cohort(tmp_path):
    config = replace(CONFIG, storage_link_ttl_seconds=0)
    with start(config) as sim, client_for(sim) as client:
        cohort = cm.Cohort("n3wsl7r", "Newsletter sign-ups", 1)
        with pytest.raises(cm.CohortError, match=r"n3wsl7r \('Newsletter sign-ups'\).*stayed "
                           r"expired.*Request has expired"):
            cm.download(client, cohort, tmp_path, polling=FAST)
        assert [r.status for r in sim.requests if r.path.endswith("/file")] == [302, 302]
        assert list(tmp_path.iterdir()) == []  # no partial file left behind


# ---- a day's snapshot: selection, quota, carry-forward, Parquet, warehouse -----------------

class Day:
    """A lake, a warehouse and the simulator: take, write and load one day as the asset does."""

    def __init__(self, sim: Simulator, root: Path) -> None:
        self.sim, self.root = sim, root
        self.snaps = Snapshots(Lake(root / "lake"), "amplitude")
        self.warehouse = amplitude_warehouse(root / "warehouse.duckdb")

    def history(self) -> cm.History:
        with self.warehouse.connect() as con:
            return cm.read_history(con, "amplitude", datetime.now(UTC))

    def take(self, day: date = TODAY, load: bool = True, **options) -> tuple[int, object]:
        with client_for(self.sim) as client:
            self.snaps.take("cohorts", day, partial(fetch_cohorts, client), today=day)
            landing, _ = self.snaps.take(cm.TABLE, day, partial(
                cm.fetch_members, client, self.snaps, day, history=self.history,
                **{"polling": FAST, **options}), today=day)
        if not load:
            return 0, landing
        with engine.connect() as con, self.snaps.staged_table_file(cm.TABLE, day) as out:
            cm.write_members(con, self.snaps, landing, out)
        with self.warehouse.connect() as con:
            rows = cm.load_members(self.snaps, con, landing)
        return rows, landing

    def rows(self, day: date = TODAY) -> dict[str, set[tuple]]:
        with self.warehouse.connect() as con:
            found = con.execute("SELECT cohort_id, amplitude_id, user_id, properties FROM "
                                "amplitude.cohort_members WHERE snapshot_date = ?",
                                [day]).fetchall()
        out: dict[str, set[tuple]] = {}
        for cohort_id, amplitude_id, user_id, props in found:
            out.setdefault(cohort_id, set()).add((amplitude_id, user_id, canonical(props)))
        return out


def expected(sim: Simulator, ids, props=()) -> dict[str, set[tuple]]:
    out = {}
    for cohort_id in ids:
        header, *rows = served(sim, cohort_id, props)
        out[cohort_id] = {
            (int(r[0]), r[1] or None,
             canonical(json.dumps(dict(zip(header[2:], map(_json, r[2:]), strict=True))))
             if props else None)
            for r in rows}
    return {k: v for k, v in out.items() if v}  # an empty cohort has no rows


def canonical(text: str | None) -> str | None:
    return None if text is None else json.dumps(json.loads(text), sort_keys=True)


def _json(value: str):
    if value and value[0] in "{[":
        return json.loads(value)
    return value or None


def test_a_day_loads_every_cohort_not_archived_and_records_its_downloads(sim, tmp_path):
    day = Day(sim, tmp_path)
    rows, landing = day.take(selection=cm.Selection(props=("country", "gp:cohorts")))
    want = expected(sim, ["k3x9qpl", "n3wsl7r", "e0mpty1"], ("country", "gp:cohorts"))
    assert day.rows() == want and rows == 1_260
    table = pq.read_table(day.snaps.table_file(cm.TABLE, TODAY)).to_pylist()
    assert len(table) == rows and {r["downloaded_on"] for r in table} == {TODAY}
    with day.warehouse.connect() as con:
        ledger = con.execute(
            "SELECT cohort_id, members, epoch(last_computed)::BIGINT, snapshot_date, bytes > 0 "
            "FROM amplitude._cohort_downloads ORDER BY 1").fetchall()
        loads = con.execute("SELECT rows FROM amplitude._snapshot_loads WHERE table_name = "
                            "'cohort_members'").fetchall()
    assert ledger == [(c, n, sim.last_computed(c), TODAY, True)
                      for c, n in (("e0mpty1", 0), ("k3x9qpl", 1_200), ("n3wsl7r", 60))]
    assert loads == [(1_260,)]
    assert landing.details["downloads_this_month"] == 3


def test_an_unchanged_cohort_is_carried_forward_without_a_request(sim, tmp_path):
    day, yesterday = Day(sim, tmp_path), TODAY - timedelta(days=1)
    day.take(yesterday, selection=cm.Selection(ids=("n3wsl7r", "k3x9qpl")))
    first = day.rows(yesterday)
    sim.reset_log()
    rows, landing = day.take(selection=cm.Selection(ids=("n3wsl7r", "k3x9qpl")))
    assert api_requests(sim) == []  # only the cohort list was asked for
    assert day.rows() == first and rows == 1_260
    assert all(Path(f).is_absolute() and str(yesterday) in f for f in landing.files)
    assert [e["carried_forward"] for e in landing.details["cohorts"]] == [True, True]
    # a recompute moves lastComputed: that cohort alone is downloaded again
    sim.recompute_cohort("n3wsl7r")
    sim.reset_log()
    rows, landing = day.take(selection=cm.Selection(ids=("n3wsl7r", "k3x9qpl")))
    requested = [r.path for r in api_requests(sim, "/api/5/cohorts/request/")]
    assert requested[0] == "/api/5/cohorts/request/n3wsl7r"
    assert not any("k3x9qpl" in p for p in requested)
    assert day.rows() == expected(sim, ["n3wsl7r", "k3x9qpl"])
    assert day.rows()["n3wsl7r"] != first["n3wsl7r"]
    # re-taking today again reuses today's own file, linked into the new version (the earlier
    # version is pruned later), and records no second download
    sim.reset_log()
    day.take(selection=cm.Selection(ids=("n3wsl7r", "k3x9qpl")))
    assert api_requests(sim) == []
    with day.warehouse.connect() as con:
        assert con.execute("SELECT cohort_id, count(*) FROM amplitude._cohort_downloads "
                           "GROUP BY 1 ORDER BY 1").fetchall() == [("k3x9qpl", 1), ("n3wsl7r", 2)]


def test_a_retry_after_a_failed_load_reuses_todays_files(sim, tmp_path):
    """Landed but never loaded (the warehouse was locked): the retry must not download again,
    and the load then records the downloads the first attempt made."""
    day = Day(sim, tmp_path)
    _, first = day.take(load=False, selection=cm.Selection(ids=("n3wsl7r",)))
    assert day.history().used == 0
    sim.reset_log()
    rows, landing = day.take(selection=cm.Selection(ids=("n3wsl7r",)))
    assert api_requests(sim) == [] and rows == 60
    assert [e["request_id"] for e in landing.details["cohorts"]] == \
        [e["request_id"] for e in first.details["cohorts"]]
    assert day.history().used == 1


def test_selection_by_ids_and_size(sim, tmp_path):
    listed = [cm.Cohort(c.id, c.name, 1, c.size, c.archived) for c in COHORTS]
    assert [c.id for c in cm.select(listed, cm.Selection())] == ["k3x9qpl", "n3wsl7r", "e0mpty1"]
    assert [c.id for c in cm.select(listed, cm.Selection(max_size=100))] == ["n3wsl7r", "e0mpty1"]
    assert [c.id for c in cm.select(listed, cm.Selection(ids=("ch4rn0x",)))] == ["ch4rn0x"]
    with pytest.raises(cm.CohortError, match="nope"):
        cm.select(listed, cm.Selection(ids=("nope",)))


def test_the_monthly_quota_refuses_before_any_request(sim, tmp_path):
    day = Day(sim, tmp_path)
    now = datetime.now(UTC)
    with day.warehouse.connect() as con:
        con.execute("INSERT INTO amplitude._cohort_downloads (cohort_id, request_id, "
                    "requested_at) SELECT 'old', 'r' || i, ? FROM range(399) t(i)", [now])
        con.execute("INSERT INTO amplitude._cohort_downloads (cohort_id, request_id, "
                    "requested_at) SELECT 'older', 'p' || i, ? FROM range(50) t(i)",
                    [now.replace(day=1) - timedelta(days=1)])  # last month: not counted
    with pytest.raises(cm.QuotaExceeded) as raised:
        day.take(selection=cm.Selection(ids=("n3wsl7r", "k3x9qpl")))
    assert raised.value.used == 399 and raised.value.limit == 400
    assert f"399 made in {now:%Y-%m}" in str(raised.value)
    assert "limit of 400 (80% of AMPLITUDE_COHORT_MONTHLY_QUOTA=500)" in str(raised.value)
    assert api_requests(sim) == []
    assert day.snaps.landed(cm.TABLE, TODAY) is None  # nothing landed, nothing loaded
    rows, landing = day.take(selection=cm.Selection(ids=("n3wsl7r",)))  # one more fits
    assert rows == 60 and landing.details["downloads_this_month"] == 400


def test_a_malformed_file_fails_naming_the_cohort(sim, tmp_path):
    day = Day(sim, tmp_path)
    _, landing = day.take(selection=cm.Selection(ids=("n3wsl7r", "k3x9qpl")))
    files = dict(zip((e["cohort_id"] for e in landing.details["cohorts"]),
                     day.snaps.paths(landing), strict=True))
    before = day.rows()
    bad = {"bad id": b'"amplitude_id","user_id"\n"123","a"\n"x","b"\n',
           "short row": b'"amplitude_id","user_id"\n"123"\n',
           "html": b"<html><body>Service Unavailable</body></html>\n"}
    for why, body in bad.items():
        path = files["k3x9qpl"]
        path.write_bytes(gzip.compress(body) if path.name.endswith(".gz") else body)
        with engine.connect() as con, pytest.raises(cm.CohortError) as raised, \
                day.snaps.staged_table_file(cm.TABLE, TODAY) as out:
            cm.write_members(con, day.snaps, landing, out)
        assert "k3x9qpl ('Purchasers (30 days)')" in str(raised.value), why
    assert day.rows() == before  # the loaded snapshot is untouched


def test_a_cut_gzip_stream_is_refused(tmp_path):
    whole = tmp_path / "a.csv.gz"
    whole.write_bytes(gzip.compress(b'"amplitude_id","user_id"\n' * 50_000))
    cut = tmp_path / "b.csv.gz"
    cut.write_bytes(whole.read_bytes()[:-9])
    two = tmp_path / "c.csv.gz"
    two.write_bytes(whole.read_bytes() * 2)
    assert cm._whole_gzip(whole) and cm._whole_gzip(two) and not cm._whole_gzip(cut)
