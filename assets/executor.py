"""The code location's executor: Dagster's in-process executor, safe against killed runs.

A run killed with SIGKILL (an OOM kill, a reboot, a deploy) cannot say it is over: it stays
STARTED in the instance and keeps the pool slots its steps claimed, so the next run of the same
assets waits for them forever. Nothing frees them for a run started from the CLI, which no daemon
watches, and Dagster's run monitoring cannot tell that a run of the default run launcher has died
either (``DefaultRunLauncher`` has no worker health check). So every run this executor starts

1. records its process in run tags (host, boot, PID namespace, PID and the process's start time,
   which tells a dead process from a new one that reuses its PID);
2. reaps dead runs before its first step: a run still STARTING/STARTED/CANCELING, or holding a
   pool slot, whose recorded process is gone is marked failed (canceled if it was canceling)
   and its slots and queued claims are freed. Runs of other hosts or PID namespaces, and runs
   without these tags, are left alone: nothing here can see whether they live;
3. waits for a pool slot for at most ``pool_wait_seconds`` (executor config, else the
   ``POOL_WAIT_SECONDS`` environment variable, else 300 s), re-checking the holders as it waits,
   then fails the run naming the pool, the runs holding its slots and how to free them. It
   sleeps between checks: Dagster 1.13's own wait never sleeps (see ``_PoolWait``) and spins a
   core for as long as it waits.

``python -m assets.executor reap`` does step 2 from a shell; ``python -m assets.executor free
RUN_ID`` marks a run of any host failed and frees its slots, once you know it is dead (Dagster's
CLI offers no way to free a slot: ``dagster instance concurrency`` only gets and sets limits).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._config import Field
from dagster._core.events import DagsterEvent, EngineEventData, JobFailureData, RunFailureReason
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.context.system import PlanExecutionContext, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.plan.execute_plan import inner_plan_execution_iterator
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.execution.step_dependency_config import (
    StepDependencyConfig,
    get_step_dependency_config_field,
)
from dagster._core.executor.in_process import InProcessExecutor
from dagster._utils.error import serializable_error_info_from_exc_info

from pipeline.liveness import TAG_PREFIX, TAG_STARTED, Liveness, ProcessIdentity

__all__ = ["TAG_PREFIX", "TAG_STARTED", "Liveness", "PoolWaitTimeout", "ProcessIdentity",
           "crash_safe_in_process_executor", "pool_wait_seconds", "reap_dead_runs"]
from pipeline.settings import SharedSettings

POOL_WAIT_ENV = "POOL_WAIT_SECONDS"
DEFAULT_POOL_WAIT_SECONDS = 300.0
# Between two looks at a pool while waiting for it: Dagster's own back-off, capped, so a slot
# freed by its holder (or by reaping a dead holder) is taken within this.
MAX_RECHECK_SECONDS = 5.0


_REAPABLE = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
             dg.DagsterRunStatus.CANCELING)


def _describe(process: ProcessIdentity | None) -> str:
    return process.describe() if process else "process (not recorded in its tags)"


# ---- reaping dead runs -------------------------------------------------------------------------

@dataclass(frozen=True)
class Reaped:
    run_id: str
    status: dg.DagsterRunStatus  # what it was
    process: ProcessIdentity | None  # None: not in its tags (freed by hand)
    freed: tuple[str, ...]  # "pool: step" of each slot or queued claim freed

    def summary(self) -> str:
        freed = f"freed {', '.join(self.freed)}" if self.freed else "it held no pool slot"
        return (f"run {self.run_id} ({self.status.value}) is dead: its "
                f"{_describe(self.process)} is gone; marked it "
                f"{'canceled' if self.status == dg.DagsterRunStatus.CANCELING else 'failed'}; "
                f"{freed}")


def _slots_by_run(instance: dg.DagsterInstance) -> dict[str, list[str]]:
    """Run id -> "pool: step" of every slot it holds or claim it has queued, in every pool."""
    storage = instance.event_log_storage
    held: dict[str, list[str]] = {}
    if not storage.supports_global_concurrency_limits:
        return held
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        claimed = {(slot.run_id, slot.step_key) for slot in info.claimed_slots}
        for run_id, step_key in sorted(claimed):
            held.setdefault(run_id, []).append(f"{pool}: {step_key}")
        for pending in info.pending_steps:  # a claimed step's row stays here, assigned
            if (pending.run_id, pending.step_key) not in claimed:
                state = "assigned" if pending.assigned_timestamp else "queued"
                held.setdefault(pending.run_id, []).append(
                    f"{pool}: {pending.step_key} ({state})")
    return held


def reap_dead_runs(instance: dg.DagsterInstance, *, by: str | None = None,
                   only: Sequence[str] | None = None) -> list[Reaped]:
    """Mark every run of this host whose process is dead as failed and free its pool slots.

    ``by`` names the run doing it (it is never reaped itself); ``only`` limits the look to those
    run ids (the holders of a pool being waited for).
    """
    here = ProcessIdentity.current()
    held = _slots_by_run(instance)
    candidates = set(held)
    if only is None:
        candidates |= {r.dagster_run.run_id for r in instance.get_run_records(
            filters=dg.RunsFilter(statuses=list(_REAPABLE)))}
    else:
        candidates &= set(only)
    candidates.discard(by or "")
    reaped = []
    for run_id in sorted(candidates):
        run = instance.get_run_by_id(run_id)
        if run is None:  # deleted, yet its slots were left: nobody can hold them any more
            with contextlib.suppress(Exception):
                instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            continue
        process = ProcessIdentity.from_tags(run.tags)
        if process is None or process.liveness(here) is not Liveness.DEAD:
            continue
        reaped.append(_reap(instance, run, process, tuple(held.get(run_id, ())), by))
    return reaped


def _reap(instance: dg.DagsterInstance, run: dg.DagsterRun, process: ProcessIdentity | None,
          held: tuple[str, ...], by: str | None) -> Reaped:
    status = run.status
    who = f"run {by}" if by else f"`python -m assets.executor` (pid {os.getpid()})"
    message = (f"This run's {_describe(process)} is gone (killed or crashed: SIGKILL, out of "
               f"memory, a reboot), so the run can never finish; {who} marked it "
               f"{'canceled' if status == dg.DagsterRunStatus.CANCELING else 'failed'} and "
               f"freed its pool slots ({', '.join(held) or 'none'}). Re-run its partitions.")
    current = instance.get_run_by_id(run.run_id)  # another run may have reaped it meanwhile
    if current is not None and current.status in _REAPABLE:
        if status == dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceled(current, message)
        else:
            instance.report_run_failed(current, message, JobFailureData(
                error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION))
    # Dagster frees a finished run's slots only in the daemon, and only when
    # run_monitoring.free_slots_after_run_end_seconds is set (_daemon/monitoring/concurrency.py).
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return Reaped(run.run_id, status, process, held)


# ---- a bounded wait for pool slots -------------------------------------------------------------

class PoolWaitTimeout(dg.DagsterError):
    """A step waited longer than the bound for a pool slot; names the holders."""


def _free_advice(pool: str) -> str:
    return (f"If a holder is dead, free its slots: `python -m assets.executor free RUN_ID` (marks "
            f"it failed and frees them), or in the UI: Deployment > Concurrency > {pool} > the "
            "slot's menu > Free all concurrency slots for run. Runs on this host are reaped at "
            "every run start; one on another host is left to Dagster's run monitoring "
            f"(dagster.yaml). If the holder is working, wait for it or raise the bound "
            f"({POOL_WAIT_ENV} or the executor config pool_wait_seconds).")


def describe_holders(instance: dg.DagsterInstance, pool: str) -> str:
    storage = instance.event_log_storage
    info = storage.get_concurrency_info(pool)
    here = ProcessIdentity.current()
    lines = []
    for slot in info.claimed_slots:
        run = instance.get_run_by_id(slot.run_id)
        if run is None:
            lines.append(f"run {slot.run_id} (deleted), step {slot.step_key}")
            continue
        process = ProcessIdentity.from_tags(run.tags)
        where = ("no process tags (started by another executor)" if process is None else
                 f"{process.describe()}, {process.liveness(here).value}")
        lines.append(f"run {slot.run_id} ({run.status.value}, job {run.job_name}, {where}), "
                     f"step {slot.step_key}")
    limit = info.limit if info.limit is not None else info.slot_count
    holders = "; ".join(lines) if lines else "no run (the slots were freed meanwhile)"
    return f"pool {pool!r} has {limit} slot(s), held by: {holders}"


class _PoolWait(InstanceConcurrencyContext):
    """Dagster's claims, with a deadline per step and a sleep between checks.

    Dagster 1.13.27's ``interval_to_next_pending_claim_check`` returns ``min([0, ...])``, never
    more than 0, so ``ActiveExecution.sleep_til_ready`` never sleeps and the in-process loop spins
    while a step waits (the 100 % CPU seen; dagster-io/dagster#20367 noticed it and was closed).
    """

    def __init__(self, instance: dg.DagsterInstance, dagster_run: dg.DagsterRun,
                 wait_seconds: float) -> None:
        super().__init__(instance, dagster_run)
        self._wait_seconds = wait_seconds
        self._blocked_since: dict[str, float] = {}

    def claim(self, concurrency_key: str, step_key: str, step_priority: int = 0) -> bool:
        asked = self._pending_claim_counts.get(step_key, 0)
        if super().claim(concurrency_key, step_key, step_priority):
            self._blocked_since.pop(step_key, None)
            return True
        now = time.time()
        since = self._blocked_since.setdefault(step_key, now)
        if self._pending_claim_counts.get(step_key, 0) != asked:  # the storage was asked: look
            info = self._instance.event_log_storage.get_concurrency_info(concurrency_key)
            holders = {slot.run_id for slot in info.claimed_slots}
            holders |= {p.run_id for p in info.pending_steps if p.assigned_timestamp is not None}
            reaped = reap_dead_runs(self._instance, by=self._run_id, only=sorted(holders))
            for dead in reaped:
                self._instance.report_engine_event(
                    f"Waiting for pool {concurrency_key}: {dead.summary()}",
                    self._instance.get_run_by_id(self._run_id))
            if reaped:
                self._pending_timeouts[step_key] = now  # a slot may be free: ask again at once
                return False
        if now - since >= self._wait_seconds:
            raise PoolWaitTimeout(
                f"step {step_key} gave up waiting for a slot of pool {concurrency_key!r} after "
                f"{now - since:.0f} s (the bound is {self._wait_seconds:g} s): "
                f"{describe_holders(self._instance, concurrency_key)}. "
                f"{_free_advice(concurrency_key)}")
        self._pending_timeouts[step_key] = min(
            self._pending_timeouts.get(step_key, now), now + MAX_RECHECK_SECONDS,
            since + self._wait_seconds)
        return False

    def interval_to_next_pending_claim_check(self) -> float:
        if not self._pending_claims:
            return 0.0
        now = time.time()
        return max(0.0, min(self._pending_timeouts.get(key, now) - now
                            for key in self._pending_claims))


# ---- the executor ------------------------------------------------------------------------------

def pool_wait_seconds(configured: float | None = None,
                      environ: Mapping[str, str] | None = None) -> float:
    """The executor config's bound, else ``POOL_WAIT_SECONDS`` (``SharedSettings``)."""
    if configured is not None:
        if not configured > 0:
            raise ValueError(f"the pool wait bound must be more than 0 seconds, not {configured}")
        return float(configured)
    return SharedSettings.from_env(environ).pool_wait_seconds


class CrashSafeInProcessExecutor(InProcessExecutor):
    def __init__(self, retries: RetryMode, step_dependency_config: StepDependencyConfig,
                 wait_seconds: float) -> None:
        super().__init__(retries=retries, step_dependency_config=step_dependency_config)
        self.pool_wait_seconds = wait_seconds

    def execute(self, plan_context: PlanOrchestrationContext,
                execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        instance, run = plan_context.instance, plan_context.dagster_run
        instance.add_run_tags(run.run_id, ProcessIdentity.current().tags())
        try:
            reaped = reap_dead_runs(instance, by=run.run_id)
        except Exception:  # the bounded wait still stands between this run and a dead holder
            yield DagsterEvent.engine_event(
                plan_context, "Could not look for dead runs to reap; going on without",
                EngineEventData(error=serializable_error_info_from_exc_info(sys.exc_info())))
            reaped = []
        for dead in reaped:
            yield DagsterEvent.engine_event(plan_context, f"Reaped a dead run: {dead.summary()}",
                                            EngineEventData())
        wait = self.pool_wait_seconds

        def iterator(job_context: PlanExecutionContext,
                     execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
            with _PoolWait(job_context.instance, job_context.dagster_run, wait) as pools:
                yield from inner_plan_execution_iterator(job_context, execution_plan, pools)

        steps = execution_plan.step_keys_to_execute
        yield DagsterEvent.engine_event(
            plan_context, f"Executing steps in process (pid: {os.getpid()}); a step waits at "
            f"most {wait:g} s for a pool slot",
            event_specific_data=EngineEventData.in_process(os.getpid(), steps))
        started = time.monotonic()
        # As InProcessExecutor.execute (dagster/_core/executor/in_process.py), but with our claims.
        yield from iter(ExecuteRunWithPlanIterable(
            execution_plan=plan_context.execution_plan,
            iterator=iterator,
            execution_context_manager=PlanExecutionContextManager(
                job=plan_context.job,
                retry_mode=plan_context.retry_mode,
                execution_plan=plan_context.execution_plan,
                run_config=plan_context.run_config,
                dagster_run=plan_context.dagster_run,
                instance=plan_context.instance,
                raise_on_error=plan_context.raise_on_error,
                output_capture=plan_context.output_capture,
                step_dependency_config=self.step_dependency_config,
            ),
        ))
        yield DagsterEvent.engine_event(
            plan_context, f"Finished steps in process (pid: {os.getpid()}) in "
            f"{time.monotonic() - started:.2f} s",
            event_specific_data=EngineEventData.in_process(os.getpid(), steps))


@dg.executor(
    name="crash_safe_in_process",
    config_schema={
        "retries": get_retries_config(),
        "step_dependency_config": get_step_dependency_config_field(),
        "pool_wait_seconds": Field(
            float, is_required=False,
            description=f"Longest wait for a pool slot before the run fails naming the holders "
            f"(default: ${POOL_WAIT_ENV}, else {DEFAULT_POOL_WAIT_SECONDS:g})."),
    },
)
def crash_safe_in_process_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Dagster's in-process executor that reaps runs whose process died and bounds pool waits."""
    config = init_context.executor_config
    return CrashSafeInProcessExecutor(
        retries=RetryMode.from_config(config["retries"]),  # type: ignore[arg-type]
        step_dependency_config=StepDependencyConfig.from_config(
            config.get("step_dependency_config")),  # type: ignore[arg-type]
        wait_seconds=pool_wait_seconds(config.get("pool_wait_seconds")),  # type: ignore[arg-type]
    )


# ---- python -m assets.executor ------------------------------------------------------------------

def _free(instance: dg.DagsterInstance, run_id: str, force: bool) -> str:
    run = instance.get_run_by_id(run_id)
    if run is None:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        return f"run {run_id} does not exist; freed any slots left in its name"
    process = ProcessIdentity.from_tags(run.tags)
    if process is not None and process.liveness() is Liveness.ALIVE and not force:
        raise SystemExit(f"run {run_id}'s {process.describe()} is alive: terminate the run "
                         "instead, or pass --force if you know better")
    held = tuple(_slots_by_run(instance).get(run_id, ()))
    if run.status in _REAPABLE:
        return _reap(instance, run, process, held, None).summary()
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return f"run {run_id} ({run.status.value}): freed {', '.join(held) or 'no slot'}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assets.executor", description=(
        "Settle runs whose process died, in the instance at $DAGSTER_HOME."))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("reap", help="mark this host's dead runs failed and free their slots")
    free = commands.add_parser("free", help="mark a dead run failed and free its pool slots")
    free.add_argument("run_id")
    free.add_argument("--force", action="store_true", help="even if its process looks alive")
    args = parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        if args.command == "reap":
            reaped = reap_dead_runs(instance)
            for dead in reaped:
                print(dead.summary())
            print(f"{len(reaped)} dead run(s) reaped")
        else:
            print(_free(instance, args.run_id, args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
