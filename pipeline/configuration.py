"""Every setting of the deployment, gathered from the models that declare them: the credentials
to keep out of every log, and ``docs/configuration.md``.

    python -m pipeline.configuration          # write docs/configuration.md
    python -m pipeline.configuration --check  # fail if it is stale (the test suite does)
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel

from pipeline.settings import InstanceSettings, SharedSettings, secret_variables, table, yaml_only
from pipeline.source import registered

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
INTRO = """# Configuration

Generated from the settings models by `python -m pipeline.configuration`; a test fails when it
is stale. Each source's project configured from the environment reads the variables below;
a project declared in YAML (`assets/projects/<name>/defs.yaml`, see the README) takes the same
settings as attributes, in lower case (`lag_hours: 2`), plus its `name` and the names of the
variables that hold its credentials. A `.env` in the working folder is loaded by the Dagster
CLI (`.env.example` lists the common ones). An empty variable counts as unset.

Secrets are never logged, put in metadata, errors or files: Dagster resources read them
through `EnvVar` at run time."""


def credentials(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Every variable that holds a secret: the shared ones, each source's standard credential
    variables, and ``extra`` (the variables YAML projects name)."""
    names = list(secret_variables(SharedSettings, InstanceSettings))
    for source in registered().values():
        for field in source.settings.model_fields.values():
            extra_info = field.json_schema_extra if isinstance(field.json_schema_extra,
                                                              dict) else {}
            if yaml_only(field) and isinstance(extra_info.get("default_variable"), str):
                names.append(str(extra_info["default_variable"]))
    return tuple(dict.fromkeys([*names, *extra]))


def _doc(model: type[BaseModel]) -> str:
    return inspect.cleandoc(model.__doc__ or "").replace("``", "`")


def _section(title: str, model: type[BaseModel], yaml: bool) -> list[str]:
    lines = [f"## {title}", "", _doc(model), ""]
    if yaml:
        lines += ["| variable | YAML key | default | meaning |", "| --- | --- | --- | --- |"]
        for name, row in zip(model.model_fields, table(model), strict=True):
            field = model.model_fields[name]
            variable, rest = row.split(" | ", 1)
            if yaml_only(field):  # the variable holds the secret; YAML names a variable
                extra = field.json_schema_extra if isinstance(field.json_schema_extra,
                                                              dict) else {}
                variable = f"| `{extra.get('default_variable')}` (a secret)"
                rest = "names the variable | " + rest.split(" | ", 1)[1]
            lines.append(f"{variable} | `{name}` | {rest}")
    else:
        lines += ["| variable | default | meaning |", "| --- | --- | --- |", *table(model)]
    return [*lines, ""]


def document() -> str:
    lines = [INTRO, ""]
    lines += _section("Shared: lake, warehouse, limits, executor, alerts", SharedSettings, False)
    for name in sorted(registered()):
        model = registered()[name].settings
        lines += _section(str(getattr(model, "docs_title", name)), model, True)
    lines += _section("The production Dagster instance (deploy/dagster.yaml)", InstanceSettings,
                      False)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.configuration")
    parser.add_argument("--check", action="store_true", help="fail if docs/configuration.md "
                        "differs from what the settings models say")
    args = parser.parse_args(argv)
    text = document()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is stale: run python -m pipeline.configuration", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
