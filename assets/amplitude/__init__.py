"""One Amplitude project's part of the code location: its assets, checks, jobs, schedules and its
client resource, all named after its namespace (``assets/namespace.py``)."""

from typing import Any

import dagster as dg

from assets.amplitude.checks import build_freshness, build_reconciliation
from assets.amplitude.cohort_members import build_cohort_member_assets
from assets.amplitude.events import build_event_assets
from assets.amplitude.jobs import build_jobs
from assets.amplitude.snapshots import build_snapshot_assets, snapshot_days
from assets.namespace import Names
from assets.partitions import upload_hour_partitions
from pipeline.amplitude.settings import AmplitudeOptions
from pipeline.settings import SharedSettings
from pipeline.source import Project
from resources import AmplitudeExportResource, AmplitudeStorageResource


def client_resource(names: Names, options: AmplitudeOptions,
                    shared: SharedSettings) -> AmplitudeExportResource:
    """The project's client: keys through ``EnvVar`` (the variables its settings name)."""
    limits_dsn: Any = dg.EnvVar("LIMITS_DSN") if shared.limits_dsn else None
    return AmplitudeExportResource(
        api_key=dg.EnvVar(options.api_key_env), secret_key=dg.EnvVar(options.secret_key_env),
        key_variables=" and ".join(options.credential_variables), project=names.namespace,
        region=options.region, base_url=options.host, lag_hours=options.lag_hours,
        max_window_hours=options.max_window_hours, limits_path=shared.limits_file,
        limits_dsn=limits_dsn, rate_limits=options.rate_limits,
        refetch_after_hours=options.refetch_after_hours)


def storage_resource(options: AmplitudeOptions,
                     shared: SharedSettings) -> AmplitudeStorageResource:
    """The bucket of the project's storage export and merged-ID files: its own keys (through
    ``EnvVar``) where set, else the standard AWS ones, else the AWS tools' own chain."""
    keys = options.storage_key_variables() or (
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if shared.aws_access_key_id else None)
    secrets: dict[str, Any] = ({"access_key_id": dg.EnvVar(keys[0]),
                                "secret_access_key": dg.EnvVar(keys[1]),
                                "key_variables": " and ".join(keys)} if keys else {})
    return AmplitudeStorageResource(
        url=options.storage_url, merge_ids_url=options.merges_url, project_id=options.project_id,
        endpoint_url=(options.storage_endpoint_url or shared.aws_endpoint_url_s3
                      or shared.aws_endpoint_url),
        region=options.storage_region or shared.aws_region or shared.aws_default_region
        or "us-east-1",
        markers=options.storage_markers, ready_after_hours=options.storage_ready_after_hours,
        **secrets)


def defs(project: Project, options: AmplitudeOptions, shared: SharedSettings) -> dg.Definitions:
    names = Names(project)
    hours = upload_hour_partitions(options.start, options.partition_lag_hours)
    days = snapshot_days(options.start.date())
    return dg.Definitions.merge(
        dg.Definitions(
            assets=[*build_event_assets(names, options, hours),
                    *build_snapshot_assets(names, options, days),
                    *build_cohort_member_assets(names, options, days)],
            asset_checks=[build_freshness(names, options), build_reconciliation(names, options)],
            resources={names.resource: client_resource(names, options, shared),
                       **({names.storage_resource: storage_resource(options, shared)}
                          if options.from_storage or options.org_id else {})}),
        build_jobs(names, options))
