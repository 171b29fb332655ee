"""The code location: ``defs`` built from the environment (see README, Configuration)."""

from __future__ import annotations

import os

import dagster as dg

from assets.alerts import ALERT_SENSORS
from assets.analytics import build_analytics_assets
from assets.cohort_members import build_cohort_member_assets
from assets.distributed import executor_from_env
from assets.events import build_event_assets
from assets.executor import crash_safe_in_process_executor
from assets.freshness import amplitude_freshness, build_freshness, freshness_schedule
from assets.mixpanel_defs import settings_from_env as mixpanel_settings
from assets.mixpanel_defs import with_mixpanel
from assets.partitions import upload_hour_partitions
from assets.reconciliation import amplitude_reconcile, build_reconciliation, reconcile_schedule
from assets.schedules import (
    amplitude_hourly,
    amplitude_late_data,
    hourly_schedule,
    late_data_schedule,
    snapshots_daily,
    snapshots_schedule,
)
from assets.snapshots import build_snapshot_assets, snapshot_days
from pipeline.mixpanel.settings import MixpanelSettings
from pipeline.settings import Settings
from resources import AmplitudeExportResource, LakeResource, WarehouseResource


def build_defs(settings: Settings, mixpanel: MixpanelSettings | None = None) -> dg.Definitions:
    """``mixpanel``: the Mixpanel source's settings, None when it is not configured."""
    partitions = upload_hour_partitions(settings.start, settings.lag_hours)
    days = snapshot_days(settings.start.date())
    return with_mixpanel(mixpanel, settings, dg.Definitions(
        assets=[*build_event_assets(partitions),
                *build_snapshot_assets(days, timezone=settings.project_timezone,
                                       counts_days=settings.counts_days),
                *build_cohort_member_assets(days, settings=settings),
                *build_analytics_assets(settings)],
        # A run's steps depend on each other, so separate step processes buy no parallelism and
        # cost each step a fresh interpreter that imports Dagster and the code location again:
        # 1.5-1.9 s and about 170 MB apiece (scripts/bench.py --dagster). Pools still apply.
        # reaps dead runs, bounds pool waits; DAGSTER_EXECUTOR=dask: docs/scaling.md
        executor=executor_from_env(os.environ) or crash_safe_in_process_executor,
        sensors=[*ALERT_SENSORS],  # post to ALERT_WEBHOOK_URL (docs/alerts.md)
        asset_checks=[build_freshness(settings.lag_hours),
                      build_reconciliation(settings.project_timezone,
                                           settings.reconcile_settle_hours,
                                           settings.reconcile_tolerance)],
        jobs=[amplitude_hourly, amplitude_late_data, snapshots_daily, amplitude_freshness,
              amplitude_reconcile],
        schedules=[hourly_schedule(amplitude_hourly), late_data_schedule(settings.settle_hours),
                   snapshots_schedule, freshness_schedule, reconcile_schedule],
        resources={
            "amplitude": AmplitudeExportResource(
                api_key=dg.EnvVar("AMPLITUDE_API_KEY"),
                secret_key=dg.EnvVar("AMPLITUDE_SECRET_KEY"),
                region=settings.region,
                base_url=settings.base_url,
                lag_hours=settings.lag_hours,
                max_window_hours=settings.max_window_hours,
                limits_path=str(settings.limits_path),
                limits_dsn=dg.EnvVar("LIMITS_DSN") if settings.limits_dsn else None,
                rate_limits=settings.rate_limits,
                refetch_after_hours=settings.refetch_after_hours,
            ),
            "lake": LakeResource(root=settings.lake_root, rejects=settings.rejects,
                                 catalog_registers_files=settings.warehouse_catalog is not None),
            "warehouse": WarehouseResource(
                path=str(settings.warehouse_path),
                catalog=(dg.EnvVar("WAREHOUSE_CATALOG") if settings.warehouse_catalog
                         else None),
                data_path=settings.warehouse_data_path, lake_root=settings.lake_root,
                lock_timeout_seconds=settings.warehouse_lock_timeout_seconds),
        },
    ))


defs = build_defs(Settings.from_env(), mixpanel_settings())
