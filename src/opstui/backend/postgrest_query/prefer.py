"""The `Prefer` request header, read into a fixed set of known preferences."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Prefer:
    returning: str | None = None  # representation | minimal | headers-only
    count: str | None = None  # exact | planned | estimated
    resolution: str | None = None  # merge | ignore
    missing_default: bool = False
    strict: bool = False
    max_affected: int | None = None
    applied: list[str] = field(default_factory=list)


def parse_prefer(headers: Iterable[str]) -> Prefer:
    p = Prefer()
    for header in headers:
        for token in header.split(","):
            token = token.strip()
            key, _, value = token.partition("=")
            key, value = key.strip().lower(), value.strip().lower()
            if key == "return" and value in ("representation", "minimal", "headers-only"):
                p.returning = value
            elif key == "count" and value in ("exact", "planned", "estimated"):
                p.count = value
            elif key == "resolution" and value in ("merge-duplicates", "ignore-duplicates"):
                p.resolution = value.split("-")[0]
            elif key == "missing" and value == "default":
                p.missing_default = True
            elif key == "handling" and value in ("strict", "lenient"):
                p.strict = value == "strict"
            elif key == "max-affected" and re.fullmatch(r"[0-9]{1,18}", value):
                p.max_affected = int(value)
    return p
