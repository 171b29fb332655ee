"""Several projects side by side: the environment's and YAML-declared ones, each in its own
namespace (tables, ledgers, schema versions, lake and landing folders, asset keys, jobs,
schedules, pools, limit groups), the all-projects views, and the load errors that keep two
declarations of one project apart. ``dg check defs`` and ``dg list defs`` read the YAML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.definitions import build_defs
from assets.partitions import partition_key
from pipeline.amplitude.landing import AmplitudeLake
from pipeline.lake import Lake
from simulator import HourProfile, MixpanelConfig, MixpanelSimulator, Simulator, SimulatorConfig
from tests.conftest import DAY
from tests.e2e.conftest import served_rows

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
FIRST, LAST = DAY + timedelta(hours=8), DAY + timedelta(hours=10)
WEB = SimulatorConfig(project_id=111, api_key="web-sim-api-key", secret_key="web-sim-secret",
                      seed=7, profile=HourProfile(base=30), events_per_member=20)
ENVIRONMENT = SimulatorConfig(profile=HourProfile(base=40), events_per_member=25)
WEB_YAML = """\
type: assets.components.AmplitudeProject
attributes:
  name: web
  api_key_env: WEB_AMPLITUDE_API_KEY
  secret_key_env: WEB_AMPLITUDE_SECRET_KEY
  base_url: {url}
  start: {start}
  project_timezone: America/New_York
"""


def projects_package(root: Path, files: dict[str, str]) -> str:
    """A defs folder holding ``files`` (``web/defs.yaml``: text), importable under a name of its
    own (several tests in one process must not share a module)."""
    name = f"projects_{uuid.uuid4().hex[:8]}"
    folder = root / name
    for relative, text in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    (folder / "__init__.py").write_text("")
    return name


@pytest.fixture
def two_projects(tmp_path, monkeypatch):
    """The environment's Amplitude project and a YAML one (``web``), each with its simulator."""
    with Simulator(ENVIRONMENT) as sim, Simulator(WEB) as web:
        env = {"AMPLITUDE_API_KEY": sim.config.api_key,
               "AMPLITUDE_SECRET_KEY": sim.config.secret_key, "AMPLITUDE_BASE_URL": sim.url,
               "AMPLITUDE_START": f"{DAY:%Y-%m-%dT%H}",
               "WEB_AMPLITUDE_API_KEY": web.config.api_key,
               "WEB_AMPLITUDE_SECRET_KEY": web.config.secret_key,
               "WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
               "LAKE_ROOT": str(tmp_path / "lake"),
               "LIMITS_PATH": str(tmp_path / "limits.sqlite")}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.syspath_prepend(str(tmp_path))
        module = projects_package(tmp_path, {"web/defs.yaml": WEB_YAML.format(
            url=web.url, start=f"{DAY:%Y-%m-%dT%H}")})
        yield sim, web, env, module


def materialize(defs: dg.Definitions, namespace: str,
                instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    keys = {dg.AssetKey([namespace, n]) for n in ("raw_export", "events_parquet", "events")}
    assets = [a for a in defs.assets if set(a.keys) & keys]
    return dg.materialize(assets, resources=defs.resources, instance=instance, tags={
        "dagster/asset_partition_range_start": partition_key(FIRST),
        "dagster/asset_partition_range_end": partition_key(LAST)})


def test_two_amplitude_projects_load_side_by_side_each_in_its_namespace(two_projects,
                                                                         tmp_path):
    sim, web, env, module = two_projects
    defs = build_defs(env, defs_module=f"{module}")
    with dg.instance_for_test() as instance:
        assert materialize(defs, "amplitude", instance).success
        assert materialize(defs, "amplitude_web", instance).success
    hours = [FIRST + timedelta(hours=i) for i in range(3)]
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        for schema, served_by in (("amplitude", sim), ("amplitude_web", web)):
            for hour in hours:  # field for field, each with what its own simulator served
                cursor = con.execute(f"SELECT * FROM {schema}.events WHERE _upload_hour = ?",
                                     [hour])
                names = [d[0] for d in cursor.description]
                loaded = {r[names.index("uuid")]: dict(zip(names, r, strict=True))
                          for r in cursor.fetchall()}
                expected = served_rows(served_by, hour)
                assert len(loaded) == len(expected) == served_by.hour_count(hour) > 0
                assert {u: {k: v for k, v in row.items() if k != "_source_member"}
                        for u, row in _canonical(loaded).items()} == expected
            assert con.execute(f"SELECT count(*) FROM {schema}._loads").fetchone() == (3,)
            versions = con.execute(f"SELECT max(version) FROM {schema}._schema_versions"
                                   ).fetchone()
            assert versions is not None and versions[0] >= 7
        # the all-projects views: both projects, each under its name and zone
        per_project = dict(con.execute(
            "SELECT project || ' ' || project_timezone, count(*) FROM amplitude_all.events "
            "GROUP BY ALL").fetchall())
        assert per_project == {
            "default UTC": sum(sim.hour_count(h) for h in hours),
            "web America/New_York": sum(web.hour_count(h) for h in hours)}
        assert con.execute("SELECT count(DISTINCT project) FROM amplitude_all._loads"
                           ).fetchone() == (2,)
    # the lake: each namespace its own folders, marked with its project
    lake = Lake(tmp_path / "lake")
    for namespace, name in (("amplitude", None), ("amplitude_web", "web")):
        own = lake.share(AmplitudeLake, namespace=namespace)
        assert all(own.landed_or_none(h) is not None and own.events_file(h) is not None
                   for h in hours)
        if name is not None:
            marker = json.loads((tmp_path / "lake" / namespace / "_project.json").read_text())
            assert (marker["source"], marker["name"]) == ("amplitude", name)
    # each simulator was asked once for its own window, with its own keys
    assert len(sim.export_requests()) == len(web.export_requests()) == 1


def _canonical(rows: dict[str, dict]) -> dict[str, dict]:
    from tests.e2e.conftest import canonical

    return {u: canonical(r) for u, r in rows.items()}


def test_a_projects_names_jobs_schedules_pools_and_limits_are_its_own(two_projects):
    _, _, env, module = two_projects
    defs = build_defs(env, defs_module=module)
    keys = {k.to_user_string() for a in defs.assets for k in a.keys}
    for name in ("raw_export", "events_parquet", "events", "cohorts", "cohort_members",
                 "daily_counts"):
        assert {f"amplitude/{name}", f"amplitude_web/{name}"} <= keys
    jobs = {j.name for j in defs.jobs}
    schedules = {s.name for s in defs.schedules}
    for what in ("hourly", "late_data", "snapshots_daily", "freshness", "reconcile"):
        assert {f"amplitude_{what}", f"amplitude_web_{what}"} <= jobs
    assert {"amplitude_hourly_schedule", "amplitude_web_hourly_schedule"} <= schedules
    pools = {k.to_user_string(): a.op.pool for a in defs.assets for k in a.keys
             if k.path[-1] == "raw_export"}
    assert pools == {"amplitude/raw_export": "amplitude_export",
                     "amplitude_web/raw_export": "amplitude_web_export"}
    clients = {key: defs.resources[key] for key in ("amplitude", "amplitude_web")}
    web_groups = set(clients["amplitude_web"].limiter().rules)
    assert web_groups.isdisjoint(clients["amplitude"].limiter().rules)
    assert all(group.startswith("amplitude_web:") for group in web_groups)
    warehouse = defs.resources["warehouse"]
    assert {(p.source, p.name) for p in warehouse.projects} == {("amplitude", "default"),
                                                                ("amplitude", "web")}


def test_a_project_declared_by_the_environment_and_yaml_is_a_load_error_naming_both(
        two_projects, tmp_path):
    _, _, env, _ = two_projects
    again = projects_package(tmp_path, {"default/defs.yaml": WEB_YAML.replace(
        "name: web", "name: default").format(url="http://127.0.0.1:9", start="2026-03-01T00")})
    assert (f"{again}/default/defs.yaml and the environment (AMPLITUDE_* variables) both "
            "declare the Amplitude project with namespace 'amplitude'") in load_error(env, again)
    same_keys = projects_package(tmp_path, {"mobile/defs.yaml": WEB_YAML.replace(
        "name: web", "name: mobile").replace("WEB_AMPLITUDE_", "AMPLITUDE_").format(
        url="http://127.0.0.1:9", start="2026-03-01T00")})
    assert ("both declare the Amplitude project whose credentials are in AMPLITUDE_API_KEY, "
            "AMPLITUDE_SECRET_KEY") in load_error(env, same_keys)


def load_error(env: dict[str, str], module: str) -> str:
    """The whole chain of the error the code location's load fails with."""
    with pytest.raises(Exception) as caught:
        build_defs(env, defs_module=module)
    chain, error = [], caught.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(chain)


def test_without_the_environments_variables_only_the_yaml_project_is_built(two_projects,
                                                                            tmp_path):
    env, module = two_projects[2:]
    yaml_only = {k: v for k, v in env.items() if not k.startswith("AMPLITUDE_")}
    defs = build_defs(yaml_only, defs_module=module)
    prefixes = {k.path[0] for a in defs.assets for k in a.keys}
    assert "amplitude" not in prefixes and "amplitude_web" in prefixes


def dg_project(tmp_path: Path, files: dict[str, str]) -> Path:
    """A dg project of its own whose code location is this one's, with ``files`` as its
    projects: dg reads pyproject.toml's [tool.dg] from the folder it runs in."""
    project = tmp_path / "dgproject"
    package = project / "deployment"
    (package / "projects").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "projects" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(
        "from assets.definitions import build_defs\n\n"
        "defs = build_defs(defs_module='deployment.projects')\n")
    for relative, text in files.items():
        (package / "projects" / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / "projects" / relative).write_text(text)
    (project / "pyproject.toml").write_text(
        "[tool.dg]\ndirectory_type = 'project'\n\n[tool.dg.project]\n"
        "root_module = 'deployment'\ndefs_module = 'deployment.projects'\n"
        "code_location_target_module = 'deployment.definitions'\n"
        "registry_modules = ['assets.components']\n\n"
        "[tool.dg.cli]\nsuppress_warnings = ['project_and_activated_venv_mismatch']\n")
    return project


MIXPANEL_YAML = """\
type: assets.components.MixpanelProject
attributes:
  name: shop
  timestamps: utc
  api_secret_env: SHOP_MIXPANEL_SECRET
  start: 2026-03-01
"""


def run_dg(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    dg = Path(sys.executable).with_name("dg")
    return subprocess.run(
        [str(dg), *args], cwd=project, capture_output=True, text=True, timeout=300,
        env={**os.environ, **env, "PYTHONPATH": f"{project}{os.pathsep}{ROOT}",
             "DAGSTER_HOME": str(project), "DO_NOT_TRACK": "1"})


def test_dg_checks_the_yaml_and_lists_what_each_project_builds(tmp_path):
    project = dg_project(tmp_path, {
        "web/defs.yaml": WEB_YAML.format(url="http://127.0.0.1:9", start="2026-03-01T00"),
        "shop/defs.yaml": MIXPANEL_YAML})
    (project / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {"WEB_AMPLITUDE_API_KEY": "k" * 8, "WEB_AMPLITUDE_SECRET_KEY": "s" * 8,
           "SHOP_MIXPANEL_SECRET": "m" * 8, "WAREHOUSE_PATH": str(tmp_path / "w.duckdb"),
           "LAKE_ROOT": str(tmp_path / "lake")}
    checked = run_dg(project, "check", "defs", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    listed = run_dg(project, "list", "defs", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    keys = {a["asset_key"] for a in found["assets"]}
    assert {"amplitude_web/events", "mixpanel_shop/events"} <= keys
    assert {"amplitude_web_hourly", "mixpanel_shop_daily"} <= {j["name"] for j in found["jobs"]}
    # a typo in an attribute is named with its file and line
    (project / "deployment" / "projects" / "web" / "defs.yaml").write_text(
        WEB_YAML.format(url="http://127.0.0.1:9", start="2026-03-01T00").replace(
            "project_timezone", "project_timezon"))
    typo = run_dg(project, "check", "defs", env=env)
    assert typo.returncode != 0
    assert "project_timezon" in typo.stdout + typo.stderr
    assert "web/defs.yaml" in typo.stdout + typo.stderr


def test_two_mixpanel_projects_load_side_by_side_each_in_its_namespace(tmp_path, monkeypatch):
    """The environment's Mixpanel project (local time, Los Angeles) and a YAML one (UTC), each
    with its simulator: each table holds exactly its own events, the all-projects view both."""
    local = MixpanelConfig(events_per_day=60, limits_enabled=False)
    shop = MixpanelConfig(project_id=2718281, username="shop-sa.1a2b", secret="shop-sa-secret-77",
                          api_secret="shop-project-secret-88", timestamps="utc", seed=5,
                          events_per_day=40, limits_enabled=False)
    day = date(2026, 3, 2)
    with MixpanelSimulator(local) as mine, MixpanelSimulator(shop) as theirs:
        env = {"MIXPANEL_SERVICE_ACCOUNT_USERNAME": local.username,
               "MIXPANEL_SERVICE_ACCOUNT_SECRET": local.secret,
               "MIXPANEL_PROJECT_ID": str(local.project_id), "MIXPANEL_BASE_URL": mine.url,
               "MIXPANEL_TIMESTAMPS": "local", "MIXPANEL_PROJECT_TIMEZONE": local.timezone,
               "MIXPANEL_START": "2026-03-01", "SHOP_MIXPANEL_SECRET": shop.api_secret,
               "WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
               "LAKE_ROOT": str(tmp_path / "lake"), "LIMITS_PATH": str(tmp_path / "l.sqlite")}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.syspath_prepend(str(tmp_path))
        module = projects_package(tmp_path, {"shop/defs.yaml": MIXPANEL_YAML.replace(
            "start: 2026-03-01", f"start: 2026-03-01\n  base_url: {theirs.url}")})
        defs = build_defs(env, defs_module=module)
        with dg.instance_for_test() as instance:
            for namespace in ("mixpanel", "mixpanel_shop"):
                keys = {dg.AssetKey([namespace, n]) for n in ("raw_export", "events_parquet",
                                                              "events")}
                assert dg.materialize([a for a in defs.assets if set(a.keys) & keys],
                                      resources=defs.resources, instance=instance,
                                      partition_key=day.isoformat()).success
        with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
            for schema, sim in (("mixpanel", mine), ("mixpanel_shop", theirs)):
                loaded = sorted(con.execute(f"SELECT event, distinct_id, insert_id FROM "
                                            f"{schema}.events").fetchall())
                served = sorted((s.event, s.distinct_id, s.insert_id)
                                for s in sim.served(day, day))
                assert loaded == served and served
            assert dict(con.execute("SELECT project, count(*) FROM mixpanel_all.events "
                                    "GROUP BY ALL").fetchall()) == {
                "default": len(mine.served(day, day)), "shop": len(theirs.served(day, day))}
        assert len(mine.export_requests()) == len(theirs.export_requests()) == 1
