"""One Mixpanel project's part of the code location: its assets, jobs, schedules and its client
resource, all named after its namespace (``assets/namespace.py``).

The project configured from the environment is present only when a ``MIXPANEL_*`` variable is
set: its partitions need ``MIXPANEL_TIMESTAMPS`` (their days are the project's or UTC's), which
has no default, so an Amplitude-only deployment shows no Mixpanel assets, and a half-configured
one fails the code location's load naming what is missing, rather than hiding the source.
"""

from typing import Any

import dagster as dg

from assets.mixpanel.events import build_mixpanel_assets, daily_partitions
from assets.mixpanel.jobs import build_jobs
from assets.namespace import Names
from pipeline.mixpanel.settings import MixpanelOptions
from pipeline.settings import SharedSettings
from pipeline.source import Project
from resources import MixpanelExportResource


def client_resource(names: Names, options: MixpanelOptions,
                    shared: SharedSettings) -> MixpanelExportResource:
    """Credentials as ``EnvVar``s, only those in use: a service account, else the project
    secret as the username (with a blank password)."""
    used = options.credential_variables_in_use()
    username: Any = dg.EnvVar(used[0])
    secret: Any = dg.EnvVar(used[1]) if len(used) > 1 else ""
    limits_dsn: Any = dg.EnvVar("LIMITS_DSN") if shared.limits_dsn else None
    return MixpanelExportResource(
        username=username, secret=secret, credential_variables=options.credential_names,
        project_id=options.project_id, deprecated_auth=options.deprecated_auth,
        day_timezone=options.partition_zone.key, region=options.region, base_url=options.host,
        lag_days=options.lag_days, max_window_days=options.max_window_days,
        time_in_ms=options.time_in_ms, limits_path=shared.limits_file, limits_dsn=limits_dsn)


def defs(project: Project, options: MixpanelOptions, shared: SharedSettings) -> dg.Definitions:
    names = Names(project)
    partitions = daily_partitions(options.start, options.partition_zone.key, options.lag_days)
    return dg.Definitions.merge(
        dg.Definitions(assets=build_mixpanel_assets(names, options, partitions),
                       resources={names.resource: client_resource(names, options, shared)}),
        build_jobs(names, partitions, options.settle_days))
