"""The export client against the Mixpanel simulator over real HTTP on 127.0.0.1, fault by fault."""

import gzip
import time
from datetime import date

import pytest

from pipeline.http import AuthError, Credentials
from pipeline.limits import Limiter
from pipeline.mixpanel.days import DayWindow
from pipeline.mixpanel.export import MixpanelClient, MixpanelExportError, check_body
from pipeline.mixpanel.rate_limits import MixpanelGate, export_rule, mixpanel_rules
from simulator import MixpanelConfig, MixpanelFault, MixpanelSimulator
from tests.unit.mixpanel.conftest import FALL, make_client

WINDOW = DayWindow(FALL, FALL)


def lines_of(path):
    with gzip.open(path, "rb") as body:
        return body.read().splitlines()


def test_a_window_lands_as_gzip_exactly_as_served(mp_sim, tmp_path):
    with make_client(mp_sim) as client:
        download = client.download(DayWindow(date(2026, 10, 31), FALL), tmp_path)
    assert download.path.name == "export-2026-10-31-2026-11-01.jsonl.gz"
    expected = [s.line(mp_sim.config, ms=False)
                for s in mp_sim.served(date(2026, 10, 31), FALL)]
    assert lines_of(download.path) == expected and download.lines == len(expected)
    assert download.attempts == 1 and download.bytes == download.path.stat().st_size
    (request,) = mp_sim.export_requests()
    assert request.params == {"from_date": "2026-10-31", "to_date": "2026-11-01",
                              "project_id": str(mp_sim.config.project_id)}


def test_time_in_ms_is_asked_for(mp_sim, tmp_path):
    with make_client(mp_sim) as client:
        download = client.download(WINDOW, tmp_path, time_in_ms=True)
    assert mp_sim.export_requests()[0].params["time_in_ms"] == "true"
    assert lines_of(download.path)[0] == mp_sim.served(FALL, FALL)[0].line(mp_sim.config, ms=True)


@pytest.mark.parametrize("fault, why", [
    (MixpanelFault.terminated_early(), "terminated early"),
    (MixpanelFault.cut_body(0.6), "cut short"),
    (MixpanelFault.cut_gzip(), "gzip stream ends before its end"),
    (MixpanelFault.no_final_newline(), "no final newline"),
    (MixpanelFault.split_line(), "is not one JSON object"),
])
def test_a_broken_body_is_fetched_again_never_kept(mp_sim, tmp_path, caplog, fault, why):
    mp_sim.inject(fault)
    with make_client(mp_sim) as client:
        download = client.download(WINDOW, tmp_path)
    assert download.attempts == 2 and why in caplog.text
    assert lines_of(download.path) == [s.line(mp_sim.config, ms=False)
                                       for s in mp_sim.served(FALL, FALL)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [download.path.name]


def test_a_body_that_stays_broken_fails_the_window_and_leaves_nothing(mp_sim, tmp_path):
    mp_sim.inject(*[MixpanelFault.terminated_early()] * 4)
    with make_client(mp_sim) as client, pytest.raises(MixpanelExportError) as caught:
        client.download(WINDOW, tmp_path)
    assert "terminated early" in str(caught.value) and "2026-11-01..2026-11-01" in str(
        caught.value)
    assert list(tmp_path.iterdir()) == []


def test_lines_split_across_chunks_are_read_whole(mp_sim, tmp_path):
    mp_sim.inject(MixpanelFault.chunked(size=331))  # boundaries inside lines and characters
    with make_client(mp_sim) as client:
        download = client.download(WINDOW, tmp_path)
    assert download.attempts == 1
    assert len(lines_of(download.path)) == len(mp_sim.served(FALL, FALL))


def test_429_waits_as_the_server_asks(mp_sim, tmp_path):
    mp_sim.inject(MixpanelFault.status(429, retry_after="7"))
    with make_client(mp_sim) as client:
        download = client.download(WINDOW, tmp_path)
    assert download.attempts == 2 and client.sleeps == [7.0]  # type: ignore[attr-defined]


def test_the_shared_limiter_keeps_under_three_a_second_so_no_429(tmp_path):
    config = MixpanelConfig(events_per_day=5, per_second=3)
    limiter = Limiter(mixpanel_rules(str(config.project_id)), seed=1)
    with MixpanelSimulator(config) as sim:
        gate = MixpanelGate(limiter, str(config.project_id))
        with make_client(sim, gate=gate) as client:
            began = time.monotonic()
            for n in range(5):
                client.download(WINDOW, tmp_path / str(n))
        assert time.monotonic() - began >= 1.0
        assert all(r.status == 200 for r in sim.export_requests())


def test_a_429_pauses_every_user_of_the_group(mp_sim, tmp_path):
    limiter = Limiter(mixpanel_rules("p", export_rule(per_second=100)), seed=1)
    gate = MixpanelGate(limiter, "p", default_penalty_seconds=1.0)
    mp_sim.config = MixpanelConfig(events_per_day=5, limits_enabled=False)
    mp_sim.inject(MixpanelFault.status(429))
    with make_client(mp_sim, gate=gate) as client:
        began = time.monotonic()
        client.download(WINDOW, tmp_path)
    assert time.monotonic() - began >= 0.9  # the second attempt waited out the pause


def test_the_simulators_own_limit_answers_429_past_the_hourly_budget(tmp_path):
    config = MixpanelConfig(events_per_day=5, per_hour=2, hour_seconds=60)
    with MixpanelSimulator(config) as sim, make_client(sim) as client:
        client.download(WINDOW, tmp_path)
        client.download(WINDOW, tmp_path)
        with pytest.raises(MixpanelExportError, match="429"):
            client.download(WINDOW, tmp_path)
        assert "2/2" not in sim.export_requests()[-1].limit  # 3/2 queries in the last hour
        assert sim.export_requests()[-1].status == 429


@pytest.mark.parametrize("username, secret, project, status", [
    ("wrong-user-0001", None, "default", 401),
    (None, "wrong-secret-0002", "default", 401),
    (None, None, "999", 403),
])
def test_refused_credentials_name_the_variables_never_the_values(mp_sim, tmp_path, username,
                                                                  secret, project, status):
    with make_client(mp_sim, username=username, secret=secret, project_id=project) as client, \
            pytest.raises(AuthError) as caught:
        client.download(WINDOW, tmp_path)
    message = str(caught.value)
    assert f"({status})" in message and "MIXPANEL_SERVICE_ACCOUNT_SECRET" in message
    assert "MIXPANEL_REGION" in message
    for value in ("wrong-user-0001", "wrong-secret-0002", mp_sim.config.secret,
                  mp_sim.config.username):
        assert value not in message
    assert len(mp_sim.export_requests()) == 1  # not retried


def test_400_fails_at_once_naming_what_to_check(mp_sim, tmp_path):
    with make_client(mp_sim, project_id=None) as client, \
            pytest.raises(MixpanelExportError) as caught:
        client.download(WINDOW, tmp_path)
    message = str(caught.value)
    assert "(400)" in message and "MIXPANEL_PROJECT_ID" in message
    assert mp_sim.config.secret not in message and len(mp_sim.export_requests()) == 1


def test_the_project_secret_goes_as_the_username_with_no_password(mp_sim, tmp_path):
    secret = mp_sim.config.api_secret
    client = MixpanelClient(mp_sim.url, Credentials(secret, "", "MIXPANEL_API_SECRET"),
                            project_id=None)
    with client:
        download = client.download(WINDOW, tmp_path)
    assert download.lines == len(mp_sim.served(FALL, FALL))
    wrong = MixpanelClient(mp_sim.url, Credentials("not-the-secret", "", "MIXPANEL_API_SECRET"),
                           project_id=None)
    with wrong, pytest.raises(AuthError) as caught:
        wrong.download(WINDOW, tmp_path)
    assert "MIXPANEL_API_SECRET" in str(caught.value)
    assert "not-the-secret" not in str(caught.value)


def test_an_empty_window_is_an_empty_file(tmp_path):
    with MixpanelSimulator(MixpanelConfig(events_per_day=0)) as sim, make_client(sim) as client:
        download = client.download(WINDOW, tmp_path)
    assert download.lines == 0 and download.path.read_bytes() == b""


def test_check_body_on_files(tmp_path):
    good = tmp_path / "a.jsonl"
    good.write_bytes(b'{"event":"a","properties":{}}\n{"event":"b","properties":{}}\n')
    assert check_body(good) == 2
    two = tmp_path / "b.jsonl.gz"  # two gzip members, as some servers send
    two.write_bytes(gzip.compress(b'{"a":1}\n') + gzip.compress(b'{"b":2}\n'))
    assert check_body(two) == 2


def test_check_body_counts_across_its_own_read_boundaries(tmp_path, monkeypatch):
    import pipeline.mixpanel.export as export

    body = b"".join(b'{"event":"e%d","properties":{"a":{"b":[1]}}}\n' % n for n in range(50))
    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(gzip.compress(body))
    for size in (1, 2, 3, 7, 64, 1 << 20):
        monkeypatch.setattr(export, "_READ", size)
        assert check_body(path) == 50
    path.write_bytes(gzip.compress(body[:100] + b"\n" + body[100:]))
    monkeypatch.setattr(export, "_READ", 3)
    with pytest.raises(export.IncompleteExport, match="line 3 is not one JSON object"):
        check_body(path)
