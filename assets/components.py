"""Each source as a Dagster Component: a project declared in YAML under ``assets/projects/``.

    # assets/projects/web/defs.yaml
    type: assets.components.AmplitudeProject
    attributes:
      name: web                          # namespace amplitude_web: its tables, lake, asset keys
      api_key_env: AMPLITUDE_WEB_API_KEY # the variables that hold its keys, never the keys
      secret_key_env: AMPLITUDE_WEB_SECRET_KEY
      start: 2026-03-01T00
      project_timezone: America/Los_Angeles

The attributes are the source's settings (``pipeline/<source>/settings.py``, listed in
docs/configuration.md), with the same checks and defaults as the environment's project, plus the
project's ``name``. ``dg check defs`` validates every file and ``dg list defs`` lists what each
builds. The project configured from the environment (``AMPLITUDE_*``, ``MIXPANEL_*``) is built
the same way; a project declared both there and in YAML is a load error naming both.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field

from assets import amplitude, mixpanel
from pipeline.amplitude.settings import DEFAULT_START as AMPLITUDE_START
from pipeline.amplitude.settings import AmplitudeOptions, AmplitudeSettings
from pipeline.hours import parse_setting_hour
from pipeline.mixpanel.settings import DEFAULT_START as MIXPANEL_START
from pipeline.mixpanel.settings import MixpanelOptions, MixpanelSettings, setting_day
from pipeline.settings import EnvSettings, SettingsError, SharedSettings, variable, yaml_only
from pipeline.source import DEFAULT, Project

# The environment the code location is built from (assets/definitions.py sets it for a build).
ENVIRONMENT: ContextVar[Mapping[str, str] | None] = ContextVar("environment", default=None)


def environment() -> Mapping[str, str]:
    env = ENVIRONMENT.get()
    return os.environ if env is None else env


@dataclass(frozen=True)
class Declared:
    """A project and where it was declared."""

    project: Project
    options: Any  # the source's options model
    origin: str  # "the environment (AMPLITUDE_*)", or a YAML file
    credentials: tuple[str, ...]  # the variables that hold its credentials


class SourceProject:
    """What the two components share: a project name, and building the project's definitions
    (a mixin: dg lists every Component class of the module, and this one builds nothing)."""

    source: ClassVar[str]
    settings: ClassVar[type[EnvSettings]]

    def project(self) -> Project:
        raise NotImplementedError

    def declared(self, origin: str) -> Declared:
        raise NotImplementedError

    def project_defs(self, shared: SharedSettings) -> dg.Definitions:
        raise NotImplementedError

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        mine = self.declared(_shown(context.path / "defs.yaml", context.project_root))
        others = [c.declared("another defs.yaml of the defs folder")
                  for c in in_tree(context.component_tree) if c is not self]
        for other in [*others, *environment_projects(environment())]:
            if clash := conflict(mine, other):
                raise dg.DagsterInvalidDefinitionError(clash)
        return self.project_defs(SharedSettings.from_env(environment()))


def _text(parse: Callable[[str], Any]) -> Callable[[dg.ResolutionContext, Any], Any]:
    """A YAML string read as the settings read the variable (dates are not YAML scalars here)."""
    return lambda context, raw: raw if not isinstance(raw, str) else parse(raw)


class AmplitudeProject(SourceProject, dg.Component, dg.Resolvable, AmplitudeOptions, dg.Model):
    """An Amplitude project declared in YAML (attributes: docs/configuration.md, Amplitude)."""

    model_config = ConfigDict(extra="forbid")
    source: ClassVar[str] = "amplitude"
    settings: ClassVar[type[EnvSettings]] = AmplitudeSettings
    name: str = Field(description="the project's name: its namespace is amplitude_<name> "
                      "(`default`: amplitude, the environment's)")
    start: Annotated[datetime, dg.Resolver(_text(parse_setting_hour), model_field_type=str)] = \
        Field(default_factory=lambda: parse_setting_hour(AMPLITUDE_START),
              description="first partition, an upload hour in UTC, `YYYY-MM-DDTHH`")

    def project(self) -> Project:
        return Project.named(self.source, self.name, self.project_timezone)

    def declared(self, origin: str) -> Declared:
        return Declared(self.project(), self, origin, self.credential_variables)

    def project_defs(self, shared: SharedSettings) -> dg.Definitions:
        return amplitude.defs(self.project(), self, shared)


class MixpanelProject(SourceProject, dg.Component, dg.Resolvable, MixpanelOptions, dg.Model):
    """A Mixpanel project declared in YAML (attributes: docs/configuration.md, Mixpanel)."""

    model_config = ConfigDict(extra="forbid")
    source: ClassVar[str] = "mixpanel"
    settings: ClassVar[type[EnvSettings]] = MixpanelSettings
    name: str = Field(description="the project's name: its namespace is mixpanel_<name> "
                      "(`default`: mixpanel, the environment's)")
    start: Annotated[date, dg.Resolver(_text(setting_day), model_field_type=str)] = Field(
        default_factory=lambda: date.fromisoformat(MIXPANEL_START),
        description="first partition, a day `YYYY-MM-DD`")

    def project(self) -> Project:
        return Project.named(self.source, self.name, self.partition_zone.key)

    def declared(self, origin: str) -> Declared:
        return Declared(self.project(), self, origin, self.credential_variables_in_use())

    def project_defs(self, shared: SharedSettings) -> dg.Definitions:
        return mixpanel.defs(self.project(), self, shared)


def _shown(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def in_tree(tree: dg.ComponentTree) -> list[SourceProject]:
    """The projects a defs folder declares."""
    return [*tree.get_all_components(of_type=AmplitudeProject),
            *tree.get_all_components(of_type=MixpanelProject)]


def variables(model: type[EnvSettings]) -> set[str]:
    """The variables that configure a source's project from the environment: its settings' and
    its standard credentials' (``AMPLITUDE_WEB_API_KEY``, which a YAML project may name, is
    neither)."""
    found = set()
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        found.add(str(extra["default_variable"]) if yaml_only(field) else variable(model, name))
    return found


def environment_projects(env: Mapping[str, str]) -> list[Declared]:
    """The projects the environment configures: a source's, when any of its variables is set
    (a half-configured one fails here, naming what is missing)."""
    found = []
    for component in (AmplitudeProject, MixpanelProject):
        model = component.settings
        prefix = str(model.model_config.get("env_prefix", ""))
        if not any(env.get(name, "").strip() for name in variables(model)):
            continue
        options: BaseModel = model.from_env(env)
        zone = (options.partition_zone.key if isinstance(options, MixpanelOptions)
                else getattr(options, "project_timezone", "UTC"))
        project = Project.named(component.source, DEFAULT, zone)
        credentials = (options.credential_variables_in_use()
                       if isinstance(options, MixpanelOptions)
                       else options.credential_variables)  # type: ignore[attr-defined]
        found.append(Declared(project, options, f"the environment ({prefix}* variables)",
                              tuple(credentials)))
    return found


def conflict(one: Declared, other: Declared) -> str | None:
    """Why two declarations cannot both stand, or None."""
    source = one.project.source.capitalize()
    if one.project.namespace == other.project.namespace:
        return (f"{one.origin} and {other.origin} both declare the {source} project with "
                f"namespace {one.project.namespace!r}: keep one of them (a YAML project named "
                "'default' takes the environment's place; unset the environment's variables "
                "to use it)")
    shared = sorted(set(one.credentials) & set(other.credentials))
    if one.project.source == other.project.source and shared:
        return (f"{one.origin} and {other.origin} both declare the {source} project whose "
                f"credentials are in {', '.join(shared)}: one {source} project declared twice; "
                "keep one of them, or give the other its own variables")
    return None


def project_defs(declared: Declared, shared: SharedSettings) -> dg.Definitions:
    """The definitions of a project the environment configures."""
    if declared.project.source == "amplitude":
        return amplitude.defs(declared.project, declared.options, shared)
    if declared.project.source == "mixpanel":
        return mixpanel.defs(declared.project, declared.options, shared)
    raise SettingsError(f"no component for source {declared.project.source!r}")
