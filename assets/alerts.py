"""Operators are told: sensors that post failed runs and failed checks to ALERT_WEBHOOK_URL.

Two run-status sensors, so that each finished run makes at most one message:

- ``alert_on_run_failure``: a run failed. It names the job and run, each failed step's assets
  and cause, the run's partitions, and any check that failed in the run too.
- ``alert_on_failed_checks``: a run succeeded, but checks it evaluated failed (warnings and
  errors alike). It lists each failed evaluation: per upload hour where the check reports per
  partition, and the range summaries (``partition`` unset) as "whole run".

Both watch every run of the instance (``monitor_all_code_locations``): a run started with
``dagster asset materialize`` carries no code-location origin, and a sensor watching only its own
location would never see it. The webhook is read from the environment at each evaluation; while
``ALERT_WEBHOOK_URL`` is unset the sensors run and post nothing. They are on by default
(``docs/alerts.md`` says why). Reading and posting never raise into the sensor loop: a run whose
events cannot be read still gets a short message, a post that fails is logged with its cause, and
the URL is in neither.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import dagster as dg
from dagster import DagsterEventType

from pipeline.alerts import (
    WEBHOOK_VARIABLE,
    CheckFailure,
    Message,
    RunInfo,
    StepFailure,
    Webhook,
    WebhookConfigError,
    failed_checks_message,
    metadata_summary,
    notice_message,
    partitions_label,
    run_failure_message,
    run_url,
    webhook_from_env,
)
from pipeline.settings import SharedSettings

# Dagster wraps a step's own exception in these; the cause worth telling is inside.
_WRAPPERS = {"DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError",
             "DagsterExecutionHandleOutputError", "DagsterExecutionLoadInputError",
             "DagsterResourceFunctionError"}

_UNSET = f"Posts nothing while {WEBHOOK_VARIABLE} is unset (read at each evaluation)."


def _asset_name(key: dg.AssetKey) -> str:
    return key.to_user_string()


def run_info(run: dg.DagsterRun, env: Mapping[str, str]) -> RunInfo:
    return RunInfo(job=run.job_name, run_id=run.run_id, partitions=partitions_label(run.tags),
                   url=run_url(SharedSettings.from_env(env).dagster_ui_url, run.run_id))


def error_text(error: object) -> str:
    """A SerializableErrorInfo's message, unwrapped from Dagster's step wrapper, without the
    ``module.Class: `` prefix where the class is the user's own."""
    while getattr(error, "cls_name", None) in _WRAPPERS:
        cause = getattr(error, "cause", None)
        if cause is None:
            break
        error = cause
    message = str(getattr(error, "message", error) or "").strip()
    cls_name = getattr(error, "cls_name", None)
    head, sep, rest = message.partition(": ")
    if sep and cls_name and head.split(".")[-1] == cls_name:
        message = f"{cls_name}: {rest}"
    return message


def step_assets(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[str, ...]]:
    """Each step key's asset keys, from the run's planned materializations and checks."""
    records = instance.get_records_for_run(run_id, of_type={
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED}).records
    by_step: dict[str, dict[str, None]] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None or event.step_key is None:
            continue
        key = getattr(event.event_specific_data, "asset_key", None)
        if isinstance(key, dg.AssetKey):
            by_step.setdefault(event.step_key, {})[_asset_name(key)] = None
    return {step: tuple(keys) for step, keys in by_step.items()}


def step_failures(instance: dg.DagsterInstance, run_id: str) -> list[StepFailure]:
    assets = step_assets(instance, run_id)
    failures = []
    for record in instance.get_records_for_run(
            run_id, of_type=DagsterEventType.STEP_FAILURE).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        step = event.step_key or "?"
        error = getattr(event.event_specific_data, "error", None)
        cause = error_text(error) if error is not None else (event.message or "")
        failures.append(StepFailure(step=step, assets=assets.get(step, ()),
                                    cause=cause or "no error recorded"))
    return failures


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[CheckFailure]:
    """Every failed check evaluation of the run: per partition, and summaries (no partition)."""
    failed = []
    for record in instance.get_records_for_run(
            run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event is not None else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.passed:
            continue
        failed.append(CheckFailure(
            asset=_asset_name(evaluation.asset_key), check=evaluation.check_name,
            severity=evaluation.severity.value,
            partition=getattr(evaluation, "partition", None),
            summary=metadata_summary({k: v.value for k, v in evaluation.metadata.items()}),
            description=evaluation.description))
    return failed


def run_cause(event: dg.DagsterEvent) -> str:
    """Why a run failed when no step did: its failure event's error, or its message."""
    error = getattr(event.event_specific_data, "error", None)
    return error_text(error) if error is not None else (event.message or "")


def failure_alert(instance: dg.DagsterInstance, run: dg.DagsterRun, event: dg.DagsterEvent,
                  env: Mapping[str, str]) -> Message:
    info = run_info(run, env)
    return run_failure_message(info, step_failures(instance, run.run_id),
                               run_cause=run_cause(event),
                               checks=failed_checks(instance, run.run_id))


def checks_alert(instance: dg.DagsterInstance, run: dg.DagsterRun,
                 env: Mapping[str, str]) -> Message | None:
    checks = failed_checks(instance, run.run_id)
    return failed_checks_message(run_info(run, env), checks) if checks else None


def _webhook(context: dg.RunStatusSensorContext, env: Mapping[str, str]) -> Webhook | None:
    try:
        webhook = webhook_from_env(env, logger=context.log)
    except WebhookConfigError as error:
        context.log.error(str(error))
        return None
    if webhook is None:
        context.log.debug(f"{WEBHOOK_VARIABLE} is not set: no alert posted for run "
                          f"{context.dagster_run.run_id}")
    return webhook


def _fallback(run: dg.DagsterRun, env: Mapping[str, str], title: str,
              error: Exception) -> Message:
    """When the run's events cannot be read: still say which run, and why there is no more."""
    return notice_message(run_info(run, env), title, (
        f"Its details could not be read for this alert ({type(error).__name__}: {error}); "
        "open the run in Dagster."))


def _deliver(context: dg.RunStatusSensorContext, webhook: Webhook, message: Message) -> None:
    delivery = webhook.post(message)
    run_id = context.dagster_run.run_id
    if delivery.delivered:
        context.log.info(f"alert for run {run_id} posted ({delivery.attempts} attempt(s))")
    else:
        context.log.error(f"alert for run {run_id} not posted: {delivery.cause}")


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    description="Posts each failed run to ALERT_WEBHOOK_URL (Slack-compatible JSON): the job, "
    "the failed steps' assets, the partitions, the cause and any failed checks. " + _UNSET,
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
    if context.dagster_run.status != dg.DagsterRunStatus.FAILURE:
        return  # the daemon only calls it for failed runs; a direct call may not
    env = dict(os.environ)
    webhook = _webhook(context, env)
    if webhook is None:
        return  # None, not a SkipReason: the sensor then goes on to the tick's next run
    run = context.dagster_run
    try:
        message = failure_alert(context.instance, run, context.failure_event, env)
    except Exception as error:  # an alert that cannot be detailed is still an alert
        context.log.exception(f"could not read run {run.run_id} for its alert")
        message = _fallback(run, env, f"Run failed: job {run.job_name}", error)
    _deliver(context, webhook, message)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="alert_on_failed_checks",
    description="Posts the failed asset checks (warnings and errors) of each successful run to "
    "ALERT_WEBHOOK_URL: check, asset, partition, severity and metadata. A failed run's checks "
    "go with its failure alert. " + _UNSET,
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def alert_on_failed_checks(context: dg.RunStatusSensorContext) -> None:
    if context.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
        return  # a failed run's checks go with its failure alert
    env = dict(os.environ)
    webhook = _webhook(context, env)
    if webhook is None:
        return
    run = context.dagster_run
    try:
        message = checks_alert(context.instance, run, env)
    except Exception as error:
        context.log.exception(f"could not read the checks of run {run.run_id} for its alert")
        message = _fallback(run, env, f"Checks of a run of {run.job_name} could not be read",
                            error)
    if message is not None:
        _deliver(context, webhook, message)


ALERT_SENSORS: Sequence[dg.SensorDefinition] = (alert_on_run_failure, alert_on_failed_checks)
