"""Benchmark one hour from Amplitude's storage export through `dagster asset materialize`.

``make bench`` runs it at 1M and 5M events (``python scripts/bench_storage.py --events N``): the
bench hour's gzip members (built by ``scripts/bench.py``'s ``prepare``, cached under ``.bench/``)
are written into a bucket on a SeaweedFS server on 127.0.0.1 as Amplitude lays out an hour, parts
of 50,000 events and the ``_complete`` marker, and the command loads the hour as an operator
would. ``--api`` also loads the same hour from the Export API (the simulator) in the same command,
the reference the storage path must not fall behind. Each is reported with the empty hour's
run (start-up) subtracted: seconds, events/s, the largest process and the whole tree's peak.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_dagster  # noqa: E402
from bench import EMPTY_HOUR, HOUR, prepare  # noqa: E402

PREFIX = "amplitude-export"


def upload(s3, project_id: int, members: Path) -> int:
    """The members as the hour's parts (numbered from 1, as Amplitude's docs show), then the
    marker; the empty hour's marker alone. Returns the parts written."""
    client = s3.filesystem()
    parts = sorted(members.glob("*.json.gz"))
    for number, member in enumerate(parts, start=1):
        key = f"{s3.bucket}/{PREFIX}/{project_id}/{project_id}_{HOUR:%Y-%m-%d}_{HOUR.hour}" \
              f"#{number}.json.gz"
        with open(member, "rb") as data, client.open_output_stream(key, compression=None) as out:
            while chunk := data.read(1 << 22):
                out.write(chunk)
    for hour in (HOUR, EMPTY_HOUR):
        marker = f"{s3.bucket}/{PREFIX}/{project_id}/{project_id}_{hour:%Y-%m-%d}_{hour.hour}" \
                 "_complete"
        with client.open_output_stream(marker, compression=None):
            pass
    return len(parts)


def storage_env(s3, project_id: int) -> dict[str, str]:
    return {"AMPLITUDE_EVENTS_FROM": "storage", "AMPLITUDE_PROJECT_ID": str(project_id),
            "AMPLITUDE_STORAGE_URL": f"s3://{s3.bucket}/{PREFIX}", **s3.amplitude_storage_env()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark one storage-export hour.")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--api", action="store_true",
                        help="also load the hour from the Export API, as the reference")
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench")
    parser.add_argument("--phases", action="store_true",
                        help="print each run's spans between the run's events, with the tree's "
                        "peak in each")
    args = parser.parse_args(argv)
    args.cache.mkdir(exist_ok=True)
    from tests.servers.seaweed import seaweed_server

    sim, _, _, members = prepare(args.events, args.cache)
    project_id = sim.config.project_id
    results: dict[str, list[dict]] = {"storage": [], "storage empty": [], "api": [],
                                      "api empty": []}
    try:
        with seaweed_server() as s3, tempfile.TemporaryDirectory(dir=args.cache) as work:
            parts = upload(s3, project_id, members)
            print(f"bucket: {parts} parts of the hour and its marker on SeaweedFS", flush=True)
            ways = {"storage": storage_env(s3, project_id)}
            if args.api:
                ways["api"] = {}
            for run in range(args.runs):
                for way, env in ways.items():
                    for label, hour in ((way, HOUR), (f"{way} empty", EMPTY_HOUR)):
                        start = {"AMPLITUDE_START": f"{hour - timedelta(hours=1):%Y-%m-%dT%H}"}
                        result = bench_dagster.materialize(
                            sim.url, sim.config.api_key, sim.config.secret_key, hour,
                            Path(work) / f"{label.replace(' ', '-')}-{run}", {**env, **start})
                        results[label].append(result)
                        if args.phases:
                            bench_dagster.report(label, result)
                        print(f"run {run + 1} {label}: {result['seconds']:.1f} s, largest "
                              f"process {result['largest_process_mb']:.0f} MB, tree "
                              f"{result['tree_mb']:.0f} MB", flush=True)
    finally:
        sim.stop()
    print(f"\n{args.events:,} events in one hour, `dagster asset materialize`, medians of "
          f"{args.runs}, the empty hour's run subtracted:")
    for way in ("storage", "api"):
        if not results[way]:
            continue
        seconds = statistics.median(r["seconds"] for r in results[way])
        empty = statistics.median(r["seconds"] for r in results[f"{way} empty"])
        largest = max(r["largest_process_mb"] for r in results[way])
        tree = max(r["tree_mb"] for r in results[way])
        print(f"  {way:8} {seconds:6.1f} s ({seconds - empty:.1f} s past start-up "
              f"{empty:.1f} s), {args.events / (seconds - empty):,.0f} events/s, largest "
              f"process {largest:.0f} MB, tree {tree:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
