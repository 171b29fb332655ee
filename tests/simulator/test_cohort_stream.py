"""A 2,000,000-member cohort (Amplitude's maximum) streams from the storage host in bounded
memory: the first bytes arrive long before the last, and the server's resident memory (it runs
in this process) grows by far less than the file."""

from __future__ import annotations

import csv
import io
import itertools
import os
import threading
import time
import zlib

import httpx
import pytest

from simulator import Cohort, Simulator, SimulatorConfig

AUTH = ("sim-api-key", "sim-secret-key")
SIZE = 2_000_000
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


@pytest.mark.slow
def test_two_million_members_stream_in_bounded_memory():
    config = SimulatorConfig(cohorts=(Cohort("tw0m1ll", "Everyone", SIZE),))
    with Simulator(config) as sim, httpx.Client(base_url=sim.url, auth=AUTH, timeout=60) as api:
        # the fixed cost (the 20,000 generated users, parsed once) is paid before measuring
        list(itertools.islice(sim.cohort_csv("tw0m1ll"), 20_002))
        request_id = api.get("/api/5/cohorts/request/tw0m1ll").json()["request_id"]
        while api.get(f"/api/5/cohorts/request-status/{request_id}").status_code == 202:
            pass
        location = api.get(f"/api/5/cohorts/request/{request_id}/file").headers["location"]
        baseline, peak, done = rss(), [0], threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], rss())

        sampler = threading.Thread(target=sample)
        sampler.start()
        inflate = zlib.decompressobj(wbits=31)
        lines = compressed = plain = 0
        tail = b""
        began = time.perf_counter()
        first = None
        try:
            with httpx.stream("GET", location, timeout=60) as response:
                assert response.status_code == 200
                for chunk in response.iter_raw():
                    first = first or time.perf_counter() - began
                    compressed += len(chunk)
                    data = inflate.decompress(chunk)
                    plain += len(data)
                    lines += data.count(b"\n")
                    tail = (tail + data)[-200:]
        finally:
            done.set()
            sampler.join()
        took = time.perf_counter() - began
    assert inflate.eof and lines == SIZE + 1  # the header, then every member
    last = next(csv.reader(io.StringIO(tail.decode("utf-8", "replace").splitlines()[-1])))
    assert len(last) == 2 and len(last[0]) == 13 and last[1] in ("", f"user_{SIZE - 1}@example.com")
    assert first is not None and first < took / 4, (first, took)
    growth = max(peak[0], rss()) - baseline
    assert plain > 60_000_000 and growth < plain / 4, (growth, plain, compressed)
    assert sim.errors == []
