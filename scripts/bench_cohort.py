"""Benchmark one 2,000,000-member cohort (Amplitude's maximum) through the asset's real path.

``python scripts/bench_cohort.py [--members N] [--props country,gp:plan]`` serves a cohort of N
members from the simulator on 127.0.0.1 (request → polls → 302 → storage host → gzip CSV) and,
in a fresh child process, runs what ``amplitude/cohort_members`` runs: land the cohort list, the
asynchronous download, CSV → Parquet with DuckDB, the warehouse swap with its download ledger.
Prints each phase's seconds, members/s and the child's peak RSS (from ``wait4``, so nothing the
parent and its simulator hold is counted).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COHORT = "tw0m1ll"


def child(url: str, key: str, secret: str, work: Path, props: tuple[str, ...]) -> dict:
    from pipeline import engine
    from pipeline.amplitude import cohort_members as cm
    from pipeline.amplitude.client import AmplitudeClient
    from pipeline.amplitude.cohorts import fetch_cohorts
    from pipeline.lake import Lake
    from pipeline.snapshots import Snapshots
    from pipeline.source import Project
    from pipeline.warehouse import Warehouse
    from resources import LakeResource

    lake = Lake(work / "lake")
    warehouse = Warehouse(work / "warehouse.duckdb",
                          projects=[Project.named("amplitude", "default")])
    snaps, day = Snapshots(lake, "amplitude"), datetime.now(UTC).date()
    limits = LakeResource()  # the asset's engine limits, as deployed

    def history() -> cm.History:
        with warehouse.connect() as con:
            return cm.read_history(con, "amplitude", datetime.now(UTC))

    times: dict[str, float] = {}
    began = time.perf_counter()
    with AmplitudeClient(url, key, secret) as client:
        snaps.take("cohorts", day, partial(fetch_cohorts, client))
        landing, _ = snaps.take(cm.TABLE, day, partial(
            cm.fetch_members, client, snaps, day, history=history,
            selection=cm.Selection(ids=(COHORT,), props=props),
            polling=cm.Polling(60, 0.05, 0.5)))
    times["download"] = time.perf_counter() - began
    began = time.perf_counter()
    with lake.scratch() as scratch, engine.connect(config={
            "memory_limit": limits.normalize_memory_limit, "threads": limits.normalize_threads,
            "preserve_insertion_order": False, "temp_directory": str(scratch)}) as con, \
            snaps.staged_table_file(cm.TABLE, day) as out:
        rows = cm.write_members(con, snaps, landing, out)
    times["parquet"] = time.perf_counter() - began
    began = time.perf_counter()
    with warehouse.connect() as con:
        loaded = cm.load_members(snaps, con, landing)
    times["load"] = time.perf_counter() - began
    assert rows == loaded
    entry = landing.details["cohorts"][0]
    return {"times": times, "rows": loaded, "file_bytes": entry["bytes"],
            "file": entry["file"],
            "parquet_bytes": Path(snaps.table_url(cm.TABLE, day)).stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=2_000_000)
    parser.add_argument("--props", default="", help="comma-separated user properties")
    args = parser.parse_args()
    from simulator import Cohort, Simulator, SimulatorConfig

    config = SimulatorConfig(cohorts=(Cohort(COHORT, "Everyone", args.members),),
                             cohort_polls_before_complete=1)
    with Simulator(config) as sim, tempfile.TemporaryDirectory() as work:
        list(zip(range(20_002), sim.cohort_csv(COHORT), strict=False))  # the server's warm-up
        began = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, __file__, "--child", sim.url, sim.config.api_key,
             sim.config.secret_key, work, args.props], stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - began
        if os.waitstatus_to_exitcode(status):
            raise SystemExit("the benchmark child failed")
    result = json.loads(output)
    times, rows = result["times"], result["rows"]
    work_seconds = sum(times.values())
    print(f"cohort of {rows:,} members, props: {args.props or 'none'}; "
          f"file {result['file_bytes'] / 1e6:.1f} MB ({result['file']}), "
          f"Parquet {result['parquet_bytes'] / 1e6:.1f} MB")
    print("  " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items())
          + f"; child wall time {wall:.2f} s (with interpreter start)")
    print(f"  {rows / work_seconds:,.0f} members/s over download+parquet+load, "
          f"{rows / times['download']:,.0f} members/s download alone")
    print(f"  peak RSS of the child: {usage.ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, key, secret, work, props = sys.argv[2:7]
        chosen = tuple(p for p in props.split(",") if p)
        print(json.dumps(child(url, key, secret, Path(work), chosen)))
    else:
        main()
