"""One step over a range of partitions, reported partition by partition.

A range runs as one run (``BackfillPolicy.single_run()``), but an operator reads it per
partition: its figures, its checks, and which partitions failed and why. Dagster gives a step one
outcome, so a failed step would mark every partition of its range failed, loaded ones included
(dagster-io/dagster#17836). :class:`RangeRun` keeps the outcome per partition instead:

- each good partition's metadata goes on that partition;
- each check is evaluated per partition (logged on the partition in a range; the step's own
  result per check names the failing partitions);
- :meth:`RangeRun.finish` fails the step when a partition failed, after logging a
  materialization for each good one, so the UI marks only the bad ones failed. An upstream stage
  passes ``fail_step=False``: its failures are named, and the last stage fails them, so one bad
  partition never stops the good ones from going on to the next stage in the same run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

Metadata = Mapping[str, Any]


@dataclass(frozen=True)
class Check:
    """A check evaluated once per partition by the step that writes the partition."""

    name: str
    description: str
    warn: bool = False  # a warning to look at, not an error in the data path

    @property
    def severity(self) -> dg.AssetCheckSeverity:
        return dg.AssetCheckSeverity.WARN if self.warn else dg.AssetCheckSeverity.ERROR

    def spec(self, asset: dg.AssetKey, partitions: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(self.name, asset=asset, description=self.description,
                                 partitions_def=partitions)


class RangeRun:
    """The partitions of one step (``keys``: a single partition or a whole range) of ``asset``,
    named ``unit`` in messages ("upload hour", "day")."""

    def __init__(self, context: dg.AssetExecutionContext, asset: dg.AssetKey,
                 keys: Sequence[str], *, unit: str, checks: Sequence[Check] = ()) -> None:
        self.context, self.asset, self.keys, self.unit = context, asset, list(keys), unit
        self.checks = {check.name: check for check in checks}
        self.done: dict[str, Metadata] = {}
        self.failed: dict[str, str] = {}
        self._failing: dict[str, list[str]] = {name: [] for name in self.checks}
        self._last: dict[str, Metadata] = {}

    @property
    def single(self) -> bool:
        return len(self.keys) == 1

    def ok(self, key: str, metadata: Metadata | None = None) -> None:
        self.done[key] = dict(metadata or {})

    def fail(self, key: str, cause: str) -> None:
        """The partition failed; ``cause`` names it and says why."""
        self.failed[key] = cause

    def note(self, key: str, metadata: Metadata) -> None:
        """Figures for a partition that are not its result (a landing reused, a refusal)."""
        self.context.add_asset_metadata(dict(metadata), partition_key=key)

    def check(self, key: str, name: str, passed: bool, metadata: Metadata) -> None:
        check = self.checks[name]
        if not self.single:  # one partition's result is the step's result, in finish()
            self.context.log_event(dg.AssetCheckEvaluation(
                asset_key=self.asset, check_name=name, passed=passed, partition=key,
                metadata=dict(metadata), severity=check.severity))
        self._last[name] = metadata
        if not passed:
            self._failing[name].append(key)

    def finish(self, *, fail_step: bool = True,
               metadata: Metadata | None = None) -> dg.MaterializeResult:
        """The step's result. With failed partitions and ``fail_step``, a failure naming each
        (the good ones logged as materialized first); without ``fail_step``, the failures are
        logged and the step fails only when no partition is left for the next stage."""
        if self.failed and (fail_step or len(self.failed) == len(self.keys)):
            for key, figures in self.done.items():
                self.context.log_event(dg.AssetMaterialization(self.asset, partition=key,
                                                               metadata=dict(figures)))
            raise dg.Failure(
                f"{self.asset.to_user_string()}: {len(self.failed)} of {len(self.keys)} "
                f"{self.unit}(s) failed (the other {len(self.done)} did not): "
                + "; ".join(dict.fromkeys(self.failed.values())),  # a cause shared, once
                allow_retries=False,
                metadata={"partitions_failed": len(self.failed),
                          "partitions_done": len(self.done)})
        for cause in self.failed.values():
            self.context.log.error(cause)
        for key, figures in self.done.items():
            if figures:
                self.context.add_asset_metadata(dict(figures), partition_key=key)
        counted = self.unit.split()[-1] + "s"  # "hours", "days"
        return dg.MaterializeResult(metadata=dict(metadata or {}), check_results=[
            dg.AssetCheckResult(
                check_name=name, passed=not self._failing[name], severity=check.severity,
                metadata={**(dict(self._last.get(name, {})) if self.single else {}),
                          f"{counted}_checked": len(self.done),
                          f"{counted}_failing": len(self._failing[name]),
                          f"failing_{counted}": ", ".join(self._failing[name][:50])})
            for name, check in self.checks.items()])
