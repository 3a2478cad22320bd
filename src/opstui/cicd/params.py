"""Build parameters checked against a job's parameter definitions (types, choices, required).

The same check serves the TUI's trigger form and `opstui cicd trigger --param k=v`; the
database re-checks names and required values in `trigger_cicd_job`.
"""

from __future__ import annotations

from typing import Any

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", ""}


def coerce(definition: dict[str, Any], raw: Any) -> Any:
    """One value in its definition's type; ValueError names the parameter and what is wanted."""
    name, kind = definition.get("name"), definition.get("type") or "string"
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"parameter {name}: {raw!r} is not true or false")
    if kind == "number":
        try:
            number = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"parameter {name}: {raw!r} is not a number") from None
        return int(number) if number.is_integer() else number
    text = "" if raw is None else str(raw)
    if kind == "choice":
        choices = [str(c) for c in definition.get("choices") or []]
        if choices and text not in choices:
            raise ValueError(f"parameter {name}: {text!r} is not one of {', '.join(choices)}")
    return text


def check(definitions: list[dict[str, Any]], values: dict[str, Any]) -> dict[str, Any]:
    """The values to send: typed, defaults left to the provider, unknown or missing refused."""
    by_name = {str(d.get("name")): d for d in definitions or [] if d.get("name")}
    out: dict[str, Any] = {}
    for name, raw in values.items():
        if by_name and name not in by_name:
            raise ValueError(
                f"unknown parameter {name}; this job takes: {', '.join(by_name) or 'none'}"
            )
        out[name] = coerce(by_name[name], raw) if name in by_name else raw
    for name, definition in by_name.items():
        if definition.get("required") and "default" not in definition and name not in out:
            raise ValueError(f"parameter {name} is required")
        if definition.get("required") and name in out and out[name] == "":
            raise ValueError(f"parameter {name} is required")
    return out


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    """`k=v` strings (from --param) as a dict; ValueError on a pair without `=`."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {pair!r}: expected NAME=VALUE")
        out[key.strip()] = value
    return out
