"""Reading one setting from the environment, shared by every source's settings.

A wrong value fails at once with the variable's name and what it should be, so a typo never
becomes a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping


class SettingsError(ValueError):
    pass


def whole_number(env: Mapping[str, str], name: str, default: int, minimum: int,
                 maximum: int | None = None,
                 error: type[SettingsError] = SettingsError) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise error(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise error(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise error(f"{name}={value} must be at most {maximum}")
    return value
