"""Benchmark one Mixpanel export day through the real code path, against a naive loader.

``python scripts/bench_mixpanel.py --events 1000000`` builds a deterministic day of N events with
the Mixpanel simulator (cached under ``.bench/mixpanel``), serves it on 127.0.0.1, then, in fresh
child processes:

- ours: download (gzip, checked whole) → Parquet per day (UTC conversion in SQL) → load into
  ``mixpanel.events`` with its ledger (the pipeline's own modules);
- naive: ``json.loads`` per line → ``pyarrow.Table.from_pylist`` → DuckDB insert, in batches
  of 50,000 lines, over the same gzip body, converting ``time`` as a UTC epoch as the public
  connectors do (so it is wrong for a local-time project, and still does less work).

Prints seconds, events/s and the peak RSS of each child as a whole (``wait4``: its own children
included, nothing the parent holds), against the target of 512 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY = date(2026, 11, 1)  # a 25-hour day in Los Angeles: the repeated hour is in it
ZONE = "America/Los_Angeles"
TARGET_RSS_MB = 512


def _ours(url: str, work: Path) -> dict:
    from zoneinfo import ZoneInfo

    from pipeline.http import Credentials
    from pipeline.mixpanel.days import DayWindow
    from pipeline.mixpanel.export import MixpanelClient
    from pipeline.mixpanel.load import MixpanelLoad, load_day
    from pipeline.mixpanel.normalize import normalize_window
    from pipeline.source import Project
    from pipeline.warehouse import Warehouse
    from simulator.mixpanel_data import MixpanelConfig

    config = MixpanelConfig()
    window = DayWindow(DAY, DAY)
    times = {}
    began = time.perf_counter()
    with MixpanelClient(url, Credentials(config.username, config.secret, "bench"),
                        project_id=str(config.project_id)) as client:
        download = client.download(window, work / "landing")
    times["download"] = time.perf_counter() - began
    began = time.perf_counter()
    (day,) = normalize_window(download.path, window.days,
                              lambda d: work / "lake" / f"day={d}" / "events.parquet",
                              zone=ZoneInfo(ZONE))
    times["normalize"] = time.perf_counter() - began
    began = time.perf_counter()
    warehouse = Warehouse(work / "warehouse.duckdb",
                          projects=[Project.named("mixpanel", "default")])
    with warehouse.connect() as con:  # opening it applies the migrations, Mixpanel's too
        loaded = load_day(con, "mixpanel", day.path, MixpanelLoad(
            day=DAY, request_window=str(window), window_requests=download.attempts,
            bytes_downloaded=download.bytes, fetch_seconds=download.seconds))
    times["load"] = time.perf_counter() - began
    return {"times": times, "rows": loaded.rows, "gzip_bytes": download.bytes,
            "parquet_bytes": day.bytes, "duplicates": loaded.duplicate_rows}


def _naive(body: Path, work: Path) -> dict:
    import gzip
    from datetime import UTC, datetime

    import duckdb
    import pyarrow as pa

    con = duckdb.connect(str(work / "naive.duckdb"))
    began = time.perf_counter()
    rows, batch = 0, []
    created = False

    def flush() -> None:
        nonlocal created
        arrow_batch = pa.Table.from_pylist(batch)  # noqa: F841 (DuckDB reads it by name)
        con.execute("INSERT INTO events SELECT * FROM arrow_batch" if created
                    else "CREATE TABLE events AS SELECT * FROM arrow_batch")
        created = True

    with gzip.open(body, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            props = record["properties"]
            batch.append({"event": record["event"], "distinct_id": str(props.get("distinct_id")),
                          "insert_id": props.get("$insert_id"),
                          "time": datetime.fromtimestamp(props["time"], UTC),
                          "properties": json.dumps(props)})
            if len(batch) == 50_000:
                flush()
                rows += len(batch)
                batch = []
    if batch:
        flush()
        rows += len(batch)
    return {"times": {"total": time.perf_counter() - began}, "rows": rows}


def child(argv: list[str]) -> None:
    kind, work = argv[0], Path(argv[1])
    result = _ours(argv[2], work) if kind == "ours" else _naive(Path(argv[2]), work)
    print(json.dumps(result))


def measure(kind: str, argument: str) -> dict:
    """One child; its peak RSS from wait4, so nothing the parent holds is counted."""
    with tempfile.TemporaryDirectory(dir=ROOT / ".bench") as work:
        process = subprocess.Popen([sys.executable, __file__, "child", kind, work, argument],
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"benchmark child {kind} failed")
    result = json.loads(output)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    result["total"] = sum(result["times"].values())
    return result


def _config(events: int):
    from simulator import MixpanelConfig

    return MixpanelConfig(day_counts={DAY: events}, gzip_level=6, limits_enabled=False)


def build(events: int, cache: Path) -> None:
    """Generate the day's body into the cache, in a process of its own: generating a million
    events takes over a gigabyte, and a child forked from a parent that once held that much
    inherits its peak RSS (Linux carries the high-water mark across fork and exec)."""
    from simulator import MixpanelSimulator

    with MixpanelSimulator(_config(events), cache_dir=cache / "mixpanel") as sim:
        _request(sim)


def _request(sim) -> int:
    import httpx

    config = sim.config
    with httpx.stream("GET", f"{sim.url}/api/2.0/export", params={
            "from_date": str(DAY), "to_date": str(DAY), "project_id": str(config.project_id)},
            auth=(config.username, config.secret), headers={"Accept-Encoding": "gzip"},
            timeout=3600) as response:
        return sum(len(chunk) for chunk in response.iter_raw())


def prepare(events: int, cache: Path):
    from simulator import MixpanelSimulator

    began = time.perf_counter()
    subprocess.run([sys.executable, __file__, "build", str(events), str(cache)], check=True)
    sim = MixpanelSimulator(_config(events), cache_dir=cache / "mixpanel").start()
    size = _request(sim)  # served from the cache the build wrote
    body = next(p for p in (cache / "mixpanel").glob("*.jsonl.gz") if p.stat().st_size == size)
    plain = body.with_name(body.name[:-3])
    print(f"day {DAY}: {events:,} events, {size / 1e6:.1f} MB gzip, "
          f"{plain.stat().st_size / 1e6:.1f} MB of JSON (built or found in "
          f"{time.perf_counter() - began:.1f} s)", flush=True)
    return sim, body, size, plain.stat().st_size


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "child":
        child(argv[1:])
        return 0
    if argv and argv[0] == "build":
        build(int(argv[1]), Path(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description="Benchmark one Mixpanel export day.")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench")
    parser.add_argument("--no-naive", action="store_true")
    args = parser.parse_args(argv)
    args.cache.mkdir(exist_ok=True)
    (ROOT / ".bench").mkdir(exist_ok=True)
    sim, body, gzip_bytes, json_bytes = prepare(args.events, args.cache)
    runs: dict[str, list[dict]] = {"ours": [], "naive": []}
    try:
        for run in range(args.runs):
            for kind in ("ours", *(() if args.no_naive else ("naive",))):
                result = measure(kind, sim.url if kind == "ours" else str(body))
                runs[kind].append(result)
                stages = ", ".join(f"{k} {v:.2f}" for k, v in result["times"].items())
                print(f"run {run + 1} {kind}: {result['total']:.2f} s ({stages}), "
                      f"{result['peak_rss_mb']:.0f} MB peak, {result['rows']:,} rows", flush=True)
    finally:
        sim.stop()
    print(f"\nmedian of {args.runs} run(s), {args.events:,} events, {gzip_bytes / 1e6:.1f} MB "
          f"gzip, {json_bytes / 1e6:.1f} MB of JSON")
    for kind, results in runs.items():
        if not results:
            continue
        seconds = statistics.median(r["total"] for r in results)
        rss = statistics.median(r["peak_rss_mb"] for r in results)
        print(f"  {kind:6} {seconds:8.2f} s {args.events / seconds:12,.0f} events/s "
              f"{json_bytes / 1e6 / seconds:8.1f} JSON MB/s {rss:7.0f} MB peak RSS"
              f"{f' (target <= {TARGET_RSS_MB} MB)' if kind == 'ours' else ''}")
    if runs["ours"] and runs["naive"]:
        ours = statistics.median(r["total"] for r in runs["ours"])
        naive = statistics.median(r["total"] for r in runs["naive"])
        print(f"  ours vs naive: {naive / ours:.2f}x the speed")
        parquet = statistics.median(r["parquet_bytes"] for r in runs["ours"])
        print(f"  Parquet {parquet / 1e6:.1f} MB = {parquet / gzip_bytes:.2f}x the gzip body")
    shutil.rmtree(ROOT / ".bench" / "tmp", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
