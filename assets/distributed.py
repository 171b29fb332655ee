"""Steps on a Dask cluster, chosen by the environment.

The code location stays one set of definitions for every deployment: a machine with
``DAGSTER_EXECUTOR=dask`` and ``DASK_SCHEDULER_ADDRESS`` runs each step as a task on that cluster,
any other keeps the default (crash-safe, in-process) executor. Dask steps need a persistent
instance every worker reaches (deploy/dagster.yaml, PostgreSQL), the code and the same
environment on every worker, and a lake they all see (``LAKE_ROOT=s3://...``).

dagster-dask 0.29.27's ``dask_executor`` is the model, changed in three places (docs/scaling.md):

- it cannot start a run of these assets at all: dask walks every tuple among a task's arguments,
  and a run with pools holds a ``RunOpConcurrency`` record that refuses iteration ("Iteration is
  not allowed on `@record` RunOpConcurrency"); the arguments travel wrapped here;
- it names each task ``<job>.<step>``, and Dask keys are global to the scheduler, so two runs of
  the same job at once (a backfill) would share one task and one result; keys here carry the run;
- its steps claim no pool slot (``execute_plan`` passes no concurrency context), so
  ``amplitude_export`` and ``duckdb_warehouse`` would not hold; here each step claims its pool on
  the worker, with the default executor's bounded wait and reaping (assets/executor.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import dagster as dg
import tenacity
from dagster._config import Field, StringSource
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.errors import raise_execution_interrupts
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable, create_execution_plan
from dagster._core.execution.context.system import PlanExecutionContext, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.plan.execute_plan import inner_plan_execution_iterator
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._utils import iterate_with_context

from assets.executor import _PoolWait, pool_wait_seconds
from pipeline.settings import SharedSettings

EXECUTOR_ENV = "DAGSTER_EXECUTOR"
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")


class _Opaque:
    """Carries a step's arguments past dask's walk of task arguments (see the module doc)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def run_step_on_worker(dependencies: Sequence[Any], payload: _Opaque) -> list[DagsterEvent]:
    """One step, on a Dask worker, claiming its pool in the shared instance first.

    ``dependencies`` are the futures of the steps it needs: Dask starts it once they are done.
    """
    recon_job, dagster_run, run_config, step_keys, instance_ref, known_state, wait = payload.value
    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        job = recon_job.get_subset(op_selection=dagster_run.resolved_op_selection)
        plan = create_execution_plan(job, run_config=run_config, step_keys_to_execute=step_keys,
                                     known_state=known_state)
        job = job.with_repository_load_data(plan.repository_load_data)

        def iterator(job_context: PlanExecutionContext,
                     execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
            with _PoolWait(job_context.instance, job_context.dagster_run, wait) as pools:
                yield from inner_plan_execution_iterator(job_context, execution_plan, pools)

        return list(ExecuteRunWithPlanIterable(
            execution_plan=plan, iterator=iterator,
            execution_context_manager=PlanExecutionContextManager(
                job=job, retry_mode=RetryMode.DISABLED, execution_plan=plan,
                run_config=run_config, dagster_run=dagster_run, instance=instance)))


def ensure_pools(instance: dg.DagsterInstance, pools: Iterable[str], attempts: int = 5) -> None:
    """Create each pool's limit row before any step claims it.

    Dagster creates it at the first claim, and on PostgreSQL two first claims at once (two runs
    of a backfill on two workers) collide: one step fails with a UniqueViolation on
    ``concurrency_limits_concurrency_key_key``. Done here, a collision is simply tried again.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(attempts), reraise=True,
                                 wait=tenacity.wait_incrementing(start=0.1, increment=0.1))
    for pool in sorted(set(pools)):
        for attempt in retrying:
            with attempt:
                if pool not in storage.get_concurrency_keys():
                    storage.initialize_concurrency_limit_to_default(pool)


class DaskExistingClusterExecutor(dg.Executor):
    def __init__(self, address: str, wait_seconds: float) -> None:
        self.address, self.wait_seconds = address, wait_seconds

    @property
    def retries(self) -> RetryMode:
        return RetryMode.DISABLED

    def execute(self, plan_context: PlanOrchestrationContext,
                execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        import dask.distributed
        from dagster_dask.executor import get_dask_resource_requirements

        instance = plan_context.instance
        if not instance.is_persistent:
            raise dg.DagsterInvariantViolationError(
                "steps on Dask need a persistent instance every worker reaches "
                "(deploy/dagster.yaml)")
        recon_job: ReconstructableJob = plan_context.reconstructable_job
        run = plan_context.dagster_run
        steps = execution_plan.get_steps_to_execute_in_topo_order()
        ensure_pools(instance, [step.pool for step in steps if step.pool])
        yield DagsterEvent.engine_event(
            plan_context, f"Submitting steps to the Dask scheduler at {self.address} "
            f"(orchestrating pid {os.getpid()}); a step waits at most {self.wait_seconds:g} s "
            "for a pool slot", EngineEventData())
        with dask.distributed.Client(self.address) as client:
            futures: dict[str, Any] = {}
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    needs = [futures[key] for step_input in step.step_inputs
                             for key in step_input.dependency_keys]
                    payload = _Opaque((recon_job, run, plan_context.run_config, [step.key],
                                       instance.get_ref(), execution_plan.known_state,
                                       self.wait_seconds))
                    futures[step.key] = client.submit(
                        run_step_on_worker, needs, payload, pure=False,
                        key=f"{plan_context.job_name}.{step.key}.{run.run_id}",
                        resources=get_dask_resource_requirements(step.tags))
            done = dask.distributed.as_completed(list(futures.values()), with_results=True)
            for _, events in iterate_with_context(raise_execution_interrupts, done):
                yield from events


@dg.executor(
    name="dask_existing_cluster",
    requirements=dg.multiple_process_executor_requirements(),
    config_schema={
        "address": Field(StringSource, description="The Dask scheduler, tcp://HOST:PORT."),
        "pool_wait_seconds": Field(float, is_required=False, description=(
            "Longest wait of a step for a pool slot (default: $POOL_WAIT_SECONDS, else 300).")),
    },
)
def dask_existing_cluster_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Each step a task on an existing Dask cluster, claiming its pool as other executors do."""
    config = init_context.executor_config
    return DaskExistingClusterExecutor(
        str(config["address"]),
        pool_wait_seconds(config.get("pool_wait_seconds")))  # type: ignore[arg-type]


def executor_for(shared: SharedSettings) -> dg.ExecutorDefinition | None:
    """The Dask executor on the scheduler at ``DASK_SCHEDULER_ADDRESS`` when
    ``DAGSTER_EXECUTOR=dask``; None (keep the default) otherwise (a typo in the choice fails in
    ``SharedSettings``, as it would silently run on one machine)."""
    if shared.dagster_executor != "dask":
        return None
    address = (shared.dask_scheduler_address or "").strip()
    if not address.startswith(_SCHEMES):
        raise ValueError(f"{EXECUTOR_ENV}=dask needs {SCHEDULER_ENV}=tcp://HOST:PORT (the Dask "
                         f"scheduler's address), got {address or 'nothing'!r}")
    configured: dg.ExecutorDefinition = dask_existing_cluster_executor.configured(
        {"address": address, "pool_wait_seconds": shared.pool_wait_seconds}, name="dask")
    return configured
