"""The Mixpanel simulator on its own, over HTTP: the export's rules, its data, its faults."""

import gzip
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from simulator import MixpanelConfig, MixpanelFault, MixpanelSimulator
from simulator.mixpanel import EXPORT_PATH

FALL, SPRING = date(2026, 11, 1), date(2026, 3, 8)
LA = ZoneInfo("America/Los_Angeles")


@pytest.fixture(scope="module")
def sim() -> Iterator[MixpanelSimulator]:
    with MixpanelSimulator(MixpanelConfig(limits_enabled=False, gap_readings=1)) as simulator:
        yield simulator
        assert simulator.errors == []


def export(sim, day=FALL, last=None, *, auth=None, encoding="identity", **params):
    config = sim.config
    query = {
        "from_date": str(day),
        "to_date": str(last or day),
        "project_id": str(config.project_id),
        **params,
    }
    return httpx.get(
        f"{sim.url}{EXPORT_PATH}",
        params=query,
        auth=auth or (config.username, config.secret),
        headers={"Accept-Encoding": encoding},
        timeout=10,
    )


def records(response):
    return [json.loads(line) for line in response.text.splitlines()]


def test_jsonl_sorted_by_time_with_the_documented_fields(sim):
    response = export(sim)
    assert response.status_code == 200 and "content-encoding" not in response.headers
    lines = records(response)
    assert len(lines) == len(sim.served(FALL, FALL))
    times = [line["properties"]["time"] for line in lines]
    assert times == sorted(times)
    first = lines[0]["properties"]
    assert {"time", "distinct_id", "$insert_id", "mp_processing_time_ms"} <= set(first)


def test_gzip_only_when_asked_and_over_1400_bytes(sim):
    response = export(sim, encoding="gzip")
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) < len(response.content)  # decoded by httpx
    small = export(sim, encoding="gzip", limit="1")
    assert "content-encoding" not in small.headers and len(small.content) < 1400


def test_local_time_is_the_wall_clock_of_the_true_instant(sim):
    for served in sim.served(FALL, FALL):
        if served.kind == "gap":
            continue
        wall = served.utc.astimezone(LA).replace(tzinfo=UTC)
        assert served.time_value(sim.config, ms=True) == int(wall.timestamp() * 1000)
        assert wall.date() == FALL


def test_the_dst_days_hold_the_hard_cases(sim):
    kinds = Counter(s.kind for s in sim.served(FALL, FALL))
    assert kinds["repeated_hour"] == 3 and kinds["repeated_hour_late"] == 1
    assert kinds["duplicate"] > 0 and kinds["late"] == 0  # late ones have not arrived
    repeated = [s for s in sim.served(FALL, FALL) if s.distinct_id == "dst0"]
    assert len({s.time_value(sim.config, ms=False) for s in repeated}) == 1
    assert [s.utc.hour for s in repeated] == [8, 9]
    (gap,) = [s for s in sim.served(SPRING, SPRING) if s.kind == "gap"]
    assert gap.local_wall is not None and gap.local_wall.hour == 2  # 02:xx does not exist
    hours = Counter(s.utc.astimezone(LA).hour for s in sim.served(SPRING, SPRING))
    assert hours[2] == 0


def test_late_events_arrive_with_the_switch(sim):
    before = len(records(export(sim)))
    sim.config = MixpanelConfig(limits_enabled=False, gap_readings=1, late_arrived=True)
    try:
        after = records(export(sim))
        late = [s for s in sim.served(FALL, FALL) if s.kind == "late"]
        assert late and len(after) == before + len(late)
        assert all(s.processing_ms - s.utc.timestamp() * 1000 >= 86_400_000 for s in late)
    finally:
        sim.config = MixpanelConfig(limits_enabled=False, gap_readings=1)


def test_duplicates_share_the_key_and_differ_in_processing_time(sim):
    keyed = Counter(
        (s.event, s.distinct_id, s.insert_id, s.time_value(sim.config, ms=False))
        for s in sim.served(FALL, FALL)
    )
    assert max(keyed.values()) == 2


def test_a_utc_project_serves_utc_days(sim):
    config = MixpanelConfig(timestamps="utc", limits_enabled=False)
    with MixpanelSimulator(config) as utc_sim:
        lines = records(export(utc_sim))
    days = {datetime.fromtimestamp(line["properties"]["time"], UTC).date() for line in lines}
    assert days == {FALL}


def test_time_in_ms(sim):
    seconds = records(export(sim))[0]["properties"]["time"]
    millis = records(export(sim, time_in_ms="true"))[0]["properties"]["time"]
    assert millis // 1000 == seconds and millis > 10**11


def test_event_and_where_filters(sim):
    songs = records(export(sim, event='["Song Played"]'))
    assert songs and {line["event"] for line in songs} == {"Song Played"}
    linux = records(export(sim, where='properties["$os"]=="Linux"'))
    assert linux and {line["properties"]["$os"] for line in linux} == {"Linux"}
    assert export(sim, where="properties.os = 1").status_code == 400


@pytest.mark.parametrize(
    "auth, params, status",
    [
        (("nobody", "nothing"), {}, 401),
        (("sim-sa.4f2c1e.mp-service-account", "wrong"), {}, 401),
        (None, {"project_id": ""}, 400),
        (None, {"project_id": "1"}, 403),
        (("sim-project-secret-51ab", ""), {"project_id": ""}, 200),
        (None, {"from_date": "2026-11-02"}, 400),
        (None, {"to_date": "11/01/2026"}, 400),
        (None, {"limit": "100001"}, 400),
    ],
)
def test_auth_and_parameters(sim, auth, params, status):
    assert export(sim, auth=auth, **params).status_code == status


def test_no_auth_is_401(sim):
    response = httpx.get(
        f"{sim.url}{EXPORT_PATH}", params={"from_date": "2026-11-01", "to_date": "2026-11-01"}
    )
    assert response.status_code == 401 and "www-authenticate" in response.headers


def test_faults_change_the_body_as_described(sim):
    sim.inject(
        MixpanelFault.terminated_early(),
        MixpanelFault.split_line(),
        MixpanelFault.no_final_newline(),
        MixpanelFault.status(503),
    )
    assert export(sim).text.endswith("}\nterminated early\n")
    split = export(sim).text.splitlines()
    assert len(split) == len(sim.served(FALL, FALL)) + 1
    assert not export(sim).text.endswith("\n")
    assert export(sim).status_code == 503
    sim.inject(MixpanelFault.cut_gzip())
    raw = httpx.get(
        f"{sim.url}{EXPORT_PATH}",
        params={
            "from_date": "2026-11-01",
            "to_date": "2026-11-01",
            "project_id": str(sim.config.project_id),
        },
        auth=(sim.config.username, sim.config.secret),
    ).headers
    assert raw["content-encoding"] == "gzip"


def test_a_cut_gzip_ends_at_a_line_without_its_trailer(sim):
    sim.inject(MixpanelFault.cut_gzip())
    with httpx.stream(
        "GET",
        f"{sim.url}{EXPORT_PATH}",
        params={
            "from_date": "2026-11-01",
            "to_date": "2026-11-01",
            "project_id": str(sim.config.project_id),
        },
        auth=(sim.config.username, sim.config.secret),
    ) as response:
        body = b"".join(response.iter_raw())
    assert int(response.headers["content-length"]) == len(body)
    with pytest.raises(EOFError):
        gzip.decompress(body)


def test_limits_answer_429_with_retry_after():
    config = MixpanelConfig(events_per_day=3, per_second=100, per_hour=2, hour_seconds=30)
    with MixpanelSimulator(config) as limited:
        statuses = [export(limited).status_code for _ in range(3)]
        refused = export(limited)
    assert statuses == [200, 200, 429] and refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    assert "2/2" not in refused.text and "queries in the last hour" in refused.text


def test_three_a_second():
    config = MixpanelConfig(events_per_day=3)
    with MixpanelSimulator(config) as limited:
        statuses = [export(limited).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_the_simulator_imports_nothing_from_pipeline():
    code = (
        "import sys, simulator.mixpanel, simulator.mixpanel_data; "
        "print([m for m in sys.modules if m.split('.')[0] == 'pipeline'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_expected_instants_come_from_the_generator_not_the_rule(sim):
    late = next(s for s in sim.served(FALL, FALL) if s.kind == "repeated_hour_late")
    assert late.utc.astimezone(LA).fold == 0  # the first pass of 01:xx
    assert late.processing_ms - late.utc.timestamp() * 1000 > 3_600_000
    assert late.expected_utc(ms=False) == late.utc.replace(microsecond=0)
    assert sim.served(FALL, FALL)[0].utc >= datetime(2026, 11, 1, 7, tzinfo=UTC)
    assert sim.served(FALL, FALL)[-1].utc < datetime(2026, 11, 2, 8, tzinfo=UTC)
    assert timedelta(hours=25) == datetime(2026, 11, 2, 8, tzinfo=UTC) - datetime(
        2026, 11, 1, 7, tzinfo=UTC
    )
