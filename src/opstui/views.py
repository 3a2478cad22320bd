"""Filtered, sorted views over the store's rows, and cell formatting. No Textual.

The resource table renders only the visible slice of a `TableView`, so the
cost that grows with row count lives here, where it is measured
(benchmarks/bench_table.py) and kept small:

- each row's display cells and lower-cased "haystack" are computed once per
  row version and cached;
- a filter keystroke that extends the previous filter narrows the previous
  result instead of rescanning everything;
- a live change re-checks one row and moves it with `bisect`, not a re-sort.
"""

from __future__ import annotations

import re
from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from opstui.resources import Column

_REGEX_CHARS = set(".*+?[](){}|^$\\")


# -- formatting -------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_span(seconds: float) -> str:
    """k9s-style compact durations: 42s, 5m, 3h12m, 4d."""
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if minutes < 10 else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if days < 10 else f"{days}d"


def format_cell(column: Column, row: dict[str, Any], now: datetime) -> str:
    value = row.get(column.key)
    if column.kind == "time":
        moment = parse_time(value)
        return human_span((now - moment).total_seconds()) if moment else ""
    if column.kind == "duration":
        started = parse_time(row.get("started_at"))
        if started is None:
            return ""
        ended = parse_time(row.get("completed_at")) or now
        return human_span((ended - started).total_seconds())
    if column.kind == "bool":
        if column.key == "is_windows":
            return "windows" if value else "linux"
        return "✓" if value else ""
    if column.kind == "list":
        return str(len(value)) if isinstance(value, list) else ""
    if value is None:
        return ""
    return str(value).replace("\n", " ")


def is_ticking(column: Column, row: dict[str, Any]) -> bool:
    """Cells whose text changes with the clock alone (running durations)."""
    return column.kind == "duration" and bool(row.get("started_at")) and not row.get("completed_at")


# -- filters ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowFilter:
    """`/text` as typed: fuzzy by default, a regex if it has regex syntax, `!` inverts."""

    text: str
    pattern: re.Pattern[str] | None
    inverted: bool
    fuzzy: bool
    error: str = ""

    @classmethod
    def parse(cls, text: str) -> RowFilter:
        body = text.strip()
        inverted = body.startswith("!")
        if inverted:
            body = body[1:].strip()
        if not body:
            return cls(text, None, inverted, False)
        if any(char in _REGEX_CHARS for char in body):
            try:
                return cls(text, re.compile(body, re.IGNORECASE), inverted, False)
            except re.error as exc:
                # An unfinished regex while typing: fall back to a literal match.
                literal = re.compile(re.escape(body.lower()))
                return cls(
                    text,
                    literal,
                    inverted,
                    False,
                    f"not a regex yet ({exc.msg}); matching literally",
                )
        # "abc" -> a[^b\n]*b[^c\n]*c: the same subsequence match as a.*?b.*?c, but
        # with no backtracking, and never across a newline.
        chars = body.lower()
        fuzzy = re.escape(chars[0]) + "".join(
            f"[^{re.escape(char)}\\n]*{re.escape(char)}" for char in chars[1:]
        )
        return cls(text, re.compile(fuzzy), inverted, True)

    def matches(self, haystack: str) -> bool:
        if self.pattern is None:
            return True
        return (self.pattern.search(haystack) is not None) != self.inverted

    def narrows(self, previous: RowFilter | None) -> bool:
        """True if every row matching self also matched `previous` (so we can filter its result)."""
        if previous is None or previous.pattern is None:
            return True
        if self.inverted or previous.inverted or not (self.fuzzy and previous.fuzzy):
            return False
        old = previous.text.strip()
        return self.text.strip().startswith(old)


# -- the view ---------------------------------------------------------------------------------


class TableView:
    """The rows to show, in display order. Rows live in `rows` (shared with the store).

    Internally `_ordered` holds every row's sort key in ascending order and
    `_visible` the filtered keys in the same order; a reversed sort is the
    same list read backwards, so reversing never re-sorts and a live change
    is always a bisect.
    """

    def __init__(
        self,
        columns: tuple[Column, ...],
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.columns = columns
        self.clock = clock or (lambda: datetime.now(UTC))
        self.rows: dict[str, dict[str, Any]] = {}
        self.filter: RowFilter = RowFilter.parse("")
        self.sort_column: str | None = None
        self.sort_reverse = False
        self.pinned: set[str] = set()  # keys shown first, whatever the sort
        self._haystacks: dict[str, str] = {}
        self._sort_keys: dict[str, tuple] = {}
        self._ordered: list[tuple] = []
        self._visible: list[str] = []
        # Each row's lower-cased searchable text, aligned with `_ordered`; built on the
        # first filter keystroke, not on load (most loads are never filtered).
        self._hays: list[str] | None = None
        self._warm_queue: list[str] | None = None

    # -- display order --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._visible)

    def key_at(self, index: int) -> str:
        return self._visible[-1 - index] if self.sort_reverse else self._visible[index]

    @property
    def keys(self) -> list[str]:
        return self._visible[::-1] if self.sort_reverse else list(self._visible)

    def index_of(self, key: str) -> int | None:
        if key not in self.rows:
            return None
        position = bisect_left(self._visible, self._sort_key(key), key=self._sort_key)
        if position >= len(self._visible) or self._visible[position] != key:
            return None
        return len(self._visible) - 1 - position if self.sort_reverse else position

    # -- whole-table operations ---------------------------------------------------------------

    def set_rows(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows
        self._warm_queue = None
        self._haystacks.clear()
        self._sort_keys.clear()
        self._resort()

    def set_filter(self, text: str) -> None:
        new = RowFilter.parse(text)
        narrowing = new.narrows(self.filter)
        self.filter = new
        if narrowing and new.pattern is not None and self._hays is not None:
            # The previous filter computed every visible row's haystack already.
            search, hays = new.pattern.search, self._haystacks
            self._visible = [key for key in self._visible if search(hays[key]) is not None]
        else:
            self._refilter()

    def set_sort(self, column: str | None, reverse: bool = False) -> None:
        self.sort_column = column
        self.sort_reverse = reverse
        self._sort_keys.clear()
        self._resort()

    def set_pinned(self, keys: set[str]) -> None:
        if keys != self.pinned:
            self.pinned = set(keys)
            self._sort_keys.clear()
            self._resort()

    def warm_search(self, budget: int = 4000) -> bool:
        """Compute up to `budget` haystacks ahead of the first filter keystroke.

        Call it repeatedly from idle time; True once every row is ready, so the
        first keystroke on a 100k-row table costs a scan, not 100k string builds.
        """
        pending = self._warm_queue
        if pending is None:
            pending = self._warm_queue = [k for k in self.rows if k not in self._haystacks]
        while pending and budget > 0:
            key = pending.pop()
            if key in self.rows:
                self._haystack(key)
            budget -= 1
        if not pending:
            self._warm_queue = None
            if self._hays is None:
                hays = self._haystacks
                self._hays = [hays[entry[-1]] for entry in self._ordered]
            return True
        return False

    # -- one-row operations (live changes) -------------------------------------------------

    def upsert(self, key: str, row: dict[str, Any]) -> None:
        self._remove_from_order(key)
        self.rows[key] = row
        self._haystacks.pop(key, None)
        self._sort_keys.pop(key, None)
        entry = self._sort_key(key)
        index = bisect_left(self._ordered, entry)
        self._ordered.insert(index, entry)
        if self._hays is not None:
            self._hays.insert(index, self._haystack(key))
        if self.filter.pattern is None or self.filter.matches(self._haystack(key)):
            insort(self._visible, key, key=self._sort_key)

    def remove(self, key: str) -> None:
        self._remove_from_order(key)
        self.rows.pop(key, None)
        self._haystacks.pop(key, None)
        self._sort_keys.pop(key, None)

    # -- cells ----------------------------------------------------------------------------

    # -- internals ------------------------------------------------------------------------

    def _haystack(self, key: str) -> str:
        hay = self._haystacks.get(key)
        if hay is None:
            values = map(self.rows[key].get, self._search_keys)
            hay = " ".join([str(v) for v in values if v is not None]).lower().replace("\n", " ")
            self._haystacks[key] = hay
        return hay

    @cached_property
    def _search_keys(self) -> list[str]:
        # What the user can read in the row; timestamps would only add noise ("z").
        return [c.key for c in self.columns if c.kind in ("text", "status", "number", "bool")]

    def _sort_key(self, key: str) -> tuple:
        """A plain tuple that sorts ascending; display order reads it backwards when reversed.

        Pinned rows come first and missing values last in either direction, so
        their flags flip with the direction; the key is the final tie-breaker.
        """
        cached = self._sort_keys.get(key)
        if cached is None:
            value = self.rows[key].get(self.sort_column) if self.sort_column else ""
            pinned = key in self.pinned
            missing = value is None
            if self.sort_reverse:
                flags = (1 if pinned else 0, 0 if missing else 1)
            else:
                flags = (0 if pinned else 1, 1 if missing else 0)
            if missing:
                primary: tuple = ()
            elif isinstance(value, bool | int | float):
                primary = (0, float(value))
            else:
                primary = (1, str(value).lower())
            cached = (*flags, primary, key)
            self._sort_keys[key] = cached
        return cached

    def _resort(self) -> None:
        self._ordered = sorted(self._sort_key(key) for key in self.rows)
        self._hays = None
        self._refilter()

    def _refilter(self) -> None:
        pattern = self.filter.pattern
        if pattern is None:
            self._visible = [entry[-1] for entry in self._ordered]
            return
        if self._hays is None:
            self._hays = [self._haystack(entry[-1]) for entry in self._ordered]
        # One tight comprehension over aligned lists: ~0.3 us a row, no per-row calls
        # into Python code.
        search, keep = pattern.search, not self.filter.inverted
        self._visible = [
            entry[-1]
            for entry, hay in zip(self._ordered, self._hays, strict=True)
            if (search(hay) is not None) is keep
        ]

    def _remove_from_order(self, key: str) -> None:
        if key not in self.rows:
            return
        entry = self._sort_key(key)
        index = bisect_left(self._ordered, entry)
        if index < len(self._ordered) and self._ordered[index] == entry:
            del self._ordered[index]
            if self._hays is not None:
                del self._hays[index]
        position = bisect_left(self._visible, entry, key=self._sort_key)
        if position < len(self._visible) and self._visible[position] == key:
            del self._visible[position]


# -- raw view ---------------------------------------------------------------------------------


def to_yaml(value: Any, indent: int = 0) -> str:
    """A small, safe YAML rendering of JSON data (keys sorted), for the raw row view."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = []
        for key in sorted(value):
            item = value[key]
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {to_yaml(item, indent + 1)}")
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return "[]"
        lines = []
        for item in value:
            if isinstance(item, dict | list) and item:
                nested = to_yaml(item, indent + 1).lstrip()
                lines.append(f"{pad}- {nested}")
            else:
                lines.append(f"{pad}- {to_yaml(item, indent + 1)}")
        return "\n".join(lines)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    import json as _json

    plain = text and not any(c in text for c in ":#{}[],&*!|>'\"%@`\n") and text.strip() == text
    if plain and text.lower() not in ("null", "true", "false", "yes", "no", "~"):
        try:
            float(text)
        except ValueError:
            return text
    return _json.dumps(text)
