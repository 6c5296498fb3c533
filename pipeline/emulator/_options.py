"""Command-line options of ``pipeline emulate`` turned into emulator configuration."""

from __future__ import annotations

import os
from dataclasses import fields

from pipeline.emulator._config import PROVIDERS, FaultProfile
from pipeline.errors import UsageError


def required_keys(env_name: str | None) -> dict[str, str] | None:
    """``--require-key ENV``: the one bearer key both APIs accept (None: any key)."""
    if env_name is None:
        return None
    key = os.environ.get(env_name, "").strip()
    if not key:
        raise UsageError(f"--require-key: environment variable {env_name} is empty")
    return dict.fromkeys(PROVIDERS, key)


def fault_profile(items: list[str]) -> FaultProfile:
    """``--fault name=value`` options -> a FaultProfile (values parsed by field type:
    booleans from ``1/true/yes``, text as given, numbers; ``none`` for an optional one).

    Raises ``UsageError`` for an unknown name, a value that is not a number, or a value
    the profile refuses (out of range, unknown ``error_shape``).
    """
    types = {f.name: str(f.type) for f in fields(FaultProfile)}
    values: dict[str, object] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in types:
            raise UsageError(
                f"--fault {item!r}: expected NAME=VALUE, NAME one of " + ", ".join(sorted(types))
            )
        kind = types[name]
        try:
            if "None" in kind and raw.lower() == "none":
                values[name] = None
            elif "bool" in kind:
                values[name] = raw.lower() in ("1", "true", "yes")
            elif "int" in kind:
                values[name] = int(raw)
            elif "str" in kind:
                values[name] = raw
            else:
                values[name] = float(raw)
        except ValueError:
            raise UsageError(f"--fault {item!r}: {raw!r} is not a number") from None
    try:
        return FaultProfile(**values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UsageError(f"--fault: {exc}") from None
