"""Operators are told: runs that fail and checks that fail through Dagster reach a local webhook."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import pytest

from assets.alerts import alert_on_failed_checks, alert_on_run_failure
from assets.partitions import partition_key
from simulator import Fault
from tests.conftest import DAY
from tests.e2e.conftest import Project
from tests.unit.test_alerts import PATH, TOKEN, Receiver, assert_slack_compatible, running_receiver

H = timedelta(hours=1)
FIRST = DAY + 8 * H
SECOND = FIRST + H
UI = "http://127.0.0.1:3000"


@pytest.fixture
def receiver(monkeypatch) -> Iterator[Receiver]:
    with running_receiver() as state:
        monkeypatch.setenv("ALERT_WEBHOOK_URL", state.url)
        monkeypatch.setenv("DAGSTER_UI_URL", UI)
        yield state


def evaluate(sensor: dg.RunStatusSensorDefinition, instance: dg.DagsterInstance,
             result: dg.ExecuteInProcessResult) -> None:
    """What the daemon does for one finished run: call the sensor with that run's context."""
    event = result.get_run_failure_event() if not result.success else result.get_run_success_event()
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_event=event, dagster_instance=instance,
        dagster_run=result.dagster_run)
    assert sensor(context) is None


def test_the_sensors_are_in_the_code_location_and_on_by_default(project):
    defs = project.defs()
    for name in ("alert_on_run_failure", "alert_on_failed_checks"):
        sensor = defs.resolve_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert "Posts nothing while ALERT_WEBHOOK_URL is unset" in (sensor.description or "")


def test_a_failed_hour_posts_one_alert_naming_the_asset_partition_and_cause(project, receiver):
    project.sim.inject(Fault.status(401))
    result = project.materialize(FIRST, raise_on_error=False)
    assert not result.success
    evaluate(alert_on_run_failure, project.instance, result)
    evaluate(alert_on_failed_checks, project.instance, result)  # not its business: no post
    assert len(receiver.bodies) == 1 and receiver.paths == [PATH]
    message = receiver.bodies[0]
    assert_slack_compatible(message)
    assert message["blocks"][0]["text"]["text"] == (
        f"Run failed: amplitude/raw_export (partition {partition_key(FIRST)})")
    text = message["text"]
    assert f"run `{result.run_id}`" in text
    assert f"<{UI}/runs/{result.run_id}|open the run in Dagster>" in text
    assert "*Step `amplitude__raw_export` failed* (`amplitude/raw_export`)" in text
    assert "```AuthError: refused (401)" in text
    assert "AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY" in text
    assert "Stack Trace" not in text and project.sim.config.secret_key not in text


def test_the_daemons_ticks_post_each_failed_range_once(project, receiver):
    """Through the sensor's own evaluation, as the daemon runs it: the first tick only sets the
    cursor (no alert for runs before the sensor started), the next posts each new failure once."""
    project.sim.inject(Fault.status(401))
    before = project.materialize(DAY, raise_on_error=False)  # before the sensor's first tick
    first = alert_on_run_failure.evaluate_tick(dg.build_sensor_context(instance=project.instance))
    project.sim.inject(Fault.status(401))
    failed = project.materialize(FIRST, SECOND, raise_on_error=False)
    assert not before.success and not failed.success
    second = alert_on_run_failure.evaluate_tick(dg.build_sensor_context(
        instance=project.instance, cursor=first.cursor))
    third = alert_on_run_failure.evaluate_tick(dg.build_sensor_context(
        instance=project.instance, cursor=second.cursor))
    assert not third.run_requests and len(receiver.bodies) == 1
    title = receiver.bodies[0]["blocks"][0]["text"]["text"]
    assert title == (f"Run failed: amplitude/raw_export (partitions {partition_key(FIRST)}..."
                     f"{partition_key(SECOND)})")
    assert failed.run_id in receiver.bodies[0]["text"]


def test_without_a_webhook_url_nothing_is_posted(project, receiver, monkeypatch):
    monkeypatch.delenv("ALERT_WEBHOOK_URL")
    project.sim.inject(Fault.status(401))
    result = project.materialize(FIRST, raise_on_error=False)
    evaluate(alert_on_run_failure, project.instance, result)
    assert receiver.bodies == []


def append_lines(project: Project, hour, lines: list[dict]) -> None:
    member = project.lake.member_paths(project.lake.landed(hour))[0]
    with gzip.open(member, "ab") as out:
        for line in lines:
            out.write(json.dumps(line).encode() + b"\n")


def test_failed_checks_of_a_range_post_one_alert_naming_the_hour(project, receiver):
    assert project.materialize(FIRST, SECOND).success
    line = json.loads(next(project.sim.hour_lines(SECOND)))
    append_lines(project, SECOND, [line])  # a duplicated uuid in the second hour only
    result = project.materialize(FIRST, SECOND)  # re-normalizes the landed hours
    assert result.success
    evaluate(alert_on_failed_checks, project.instance, result)
    evaluate(alert_on_run_failure, project.instance, result)  # a success: no failure alert
    assert len(receiver.bodies) == 1
    message = receiver.bodies[0]
    assert_slack_compatible(message)
    title = message["blocks"][0]["text"]["text"]
    assert title.startswith("Check warnings on amplitude/events: ")  # all are warnings
    assert "uuid_unique_per_hour" in title
    section = message["blocks"][2]["text"]["text"]
    second, first = partition_key(SECOND), partition_key(FIRST)
    assert f"• WARN `amplitude/events` *uuid_unique_per_hour* [{second}]" in section
    assert f"*uuid_unique_per_hour* [{first}]" not in section
    assert f"*uuid_unique_per_hour* [whole run]: failing_hours: {second}" in section
    assert f"partitions {first}...{second}" in message["text"]


def _checked_defs(fail_run: bool, failing: str = "h2",
                  ) -> tuple[dg.AssetsDefinition, dg.PartitionsDefinition]:
    """A generic partitioned asset whose check reports per partition plus a summary; the sensors
    read any check, not only the events asset's."""
    hours = dg.StaticPartitionsDefinition(["h1", "h2", "h3"])
    key = dg.AssetKey(["demo", "table"])

    @dg.asset(key=key, partitions_def=hours, backfill_policy=dg.BackfillPolicy.single_run(),
              check_specs=[dg.AssetCheckSpec("rows_positive", asset=key, blocking=False)])
    def table(context):  # unannotated: this module defers annotations
        for partition in context.partition_keys:
            context.log_event(dg.AssetCheckEvaluation(
                asset_key=key, check_name="rows_positive", passed=partition != failing,
                severity=dg.AssetCheckSeverity.ERROR, partition=partition,
                metadata={"rows": 0 if partition == failing else 5}))
        if fail_run:
            raise dg.Failure("the table could not be swapped in: disk full")
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(
            check_name="rows_positive", passed=failing not in context.partition_keys,
            severity=dg.AssetCheckSeverity.ERROR, metadata={"failing_partitions": failing})])

    return table, hours


@pytest.mark.parametrize("fail_run", [False, True])
def test_a_check_failing_per_partition_is_told_with_its_severity(receiver, fail_run):
    table, _ = _checked_defs(fail_run)
    with dg.instance_for_test() as instance:
        result = dg.materialize([table], instance=instance, raise_on_error=False, tags={
            "dagster/asset_partition_range_start": "h1",
            "dagster/asset_partition_range_end": "h3"})
        assert result.success is not fail_run
        evaluate(alert_on_failed_checks, instance, result)
        evaluate(alert_on_run_failure, instance, result)
    assert len(receiver.bodies) == 1
    message = receiver.bodies[0]
    assert_slack_compatible(message)
    text = message["text"]
    assert "• ERROR `demo/table` *rows_positive* [h2]: rows: 0" in text
    assert "[h1]" not in text and "[h3]" not in text
    if fail_run:
        assert message["blocks"][0]["text"]["text"] == "Run failed: demo/table (partitions h1...h3)"
        assert "```Failure: the table could not be swapped in: disk full```" in text
    else:
        assert message["blocks"][0]["text"]["text"] == (
            "Checks failed on demo/table: rows_positive (partitions h1...h3)")
        assert "• ERROR `demo/table` *rows_positive* [whole run]: failing_partitions: h2" in text
    assert TOKEN not in json.dumps(message)


def test_a_run_whose_checks_all_pass_posts_nothing(receiver):
    table, _ = _checked_defs(fail_run=False, failing="none")
    with dg.instance_for_test() as instance:
        result = dg.materialize([table], instance=instance, partition_key="h1")
        evaluate(alert_on_failed_checks, instance, result)
        evaluate(alert_on_run_failure, instance, result)
    assert receiver.bodies == []
