"""The benchmark command at a small N, so it cannot rot; its figures are not asserted."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_runs_every_path_and_reports(tmp_path):
    done = subprocess.run(
        [sys.executable, "scripts/bench.py", "--events", "3000", "--runs", "1",
         "--cache", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for label in ("ours: download", "ours: normalize", "ours: load", "ours: total",
                  "naive loader", "DuckDB read_json", "same work, no fidelity",
                  "ours vs read_json", "ours vs naive", "ours vs same_work", "Parquet",
                  "ducklake: load", "ducklake: total", "ducklake vs read_json"):
        assert label in out, label
    assert ("rows loaded: {'ours': {3000}, 'ducklake': {3000}, 'naive': {3000}, "
            "'read_json': {3000}, 'same_work': {3000}}") in out
    assert "temporary files left: 0" in out


@pytest.mark.slow
def test_bench_profile_says_where_the_time_goes(tmp_path):
    done = subprocess.run(
        [sys.executable, "scripts/bench.py", "--events", "3000", "--profile", "--cache",
         str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = done.stderr
    assert "normalize_hour" in report and "load_hour" in report  # pyinstrument
    for operator in ("TABLE_SCAN READ_JSON_OBJECTS", "COPY_TO_FILE", "TABLE_SCAN READ_PARQUET",
                     "INSERT"):
        assert operator in report, operator
