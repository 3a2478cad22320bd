"""Filtered, sorted views over the store's rows, and cell formatting. No Textual.

The resource table renders only the visible slice of a `TableView`, so the
cost that grows with row count lives here, where it is measured
(benchmarks/bench_table.py) and kept small:

- each row's display cells and lower-cased "haystack" are computed once per
  row version and cached;
- a filter keystroke that extends the previous filter narrows the previous
  result instead of rescanning everything;
- a filter is scanned in slices, in display order: the first slice finds a
  screenful of matches, and the rest is scanned between frames, so a keystroke
  costs about a screen's worth of work, not the row count;
- a live change re-checks one row and moves it with `bisect`, not a re-sort.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from opstui.resources import Column

_REGEX_CHARS = set(".*+?[](){}|^$\\")
# Regex syntax that can match a newline or see past one (so across columns): escapes
# (\s, \W, \D, \n, \A...), negated sets and groups with flags or lookaround.
_MAY_CROSS_LINES = ("\\", "[^", "(?")

# Bounds for scan frontiers: below and above every sort key (which start with a 0/1 flag).
_BELOW_ALL: tuple = ()
_ABOVE_ALL: tuple = (2,)


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


def cell_value(row: dict[str, Any], key: str) -> Any:
    """`row[key]`; a dotted key reads into JSON columns (`spec.deployment_name`)."""
    if "." not in key:
        return row.get(key)
    value: Any = row
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


# (the referenced table and column, the key) -> what people read, or None if unknown.
Labels = Callable[[tuple[str, str], Any], str | None]


def format_cell(
    column: Column, row: dict[str, Any], now: datetime, labels: Labels | None = None
) -> str:
    value = cell_value(row, column.key)
    if column.ref is not None and labels is not None and value is not None:
        # Names, not ids: a member is an email, a mapping's job is the job's name.
        return labels(column.ref, value) or str(value)
    if column.kind == "time":
        moment = parse_time(value)
        return human_span((now - moment).total_seconds()) if moment else ""
    if column.kind == "duration":
        # The column's key is the end time (completed_at, finished_at); running: until now.
        started = parse_time(row.get("started_at"))
        if started is None:
            return ""
        ended = parse_time(value) or now
        return human_span((ended - started).total_seconds())
    if column.kind == "progress":
        return f"{value or 0}/{row.get(column.of or '') or 0}"
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
    return column.kind == "duration" and bool(row.get("started_at")) and not row.get(column.key)


# -- filters ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowFilter:
    r"""`/text` as typed: fuzzy by default, a regex if it has regex syntax, `!` inverts.

    A row matches when any one of its columns matches on its own: `^lab-.*01$` is a
    whole name, `online$` a status, and a fuzzy `k8n` never takes its letters from two
    columns. The searchable text of a row is its columns' text, one per line (see
    `TableView._haystack`), so one search over it does the job when the pattern cannot
    cross a line: fuzzy patterns never do, and a regex runs with `^`/`$` at each line.
    A regex that could (`\s`, `[^…]`, `(?…)`, `\A`…) is checked line by line (`per_line`).
    An invalid regex matches nothing and says why in `error`.
    """

    text: str
    pattern: re.Pattern[str] | None
    inverted: bool
    fuzzy: bool
    error: str = ""
    per_line: bool = False

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
                pattern = re.compile(body, re.IGNORECASE | re.MULTILINE)
            except re.error as exc:
                where = f" at {exc.pos}" if exc.pos is not None else ""
                return cls(text, None, inverted, False, f"invalid pattern: {exc.msg}{where}")
            per_line = any(token in body for token in _MAY_CROSS_LINES)
            return cls(text, pattern, inverted, False, per_line=per_line)
        # "abc" -> a[^b\n]*b[^c\n]*c: the same subsequence match as a.*?b.*?c, but
        # with no backtracking, and never across a newline (so never across columns).
        chars = body.lower()
        fuzzy = re.escape(chars[0]) + "".join(
            f"[^{re.escape(char)}\\n]*{re.escape(char)}" for char in chars[1:]
        )
        return cls(text, re.compile(fuzzy), inverted, True)

    def found(self, haystack: str) -> bool:
        """True if any one column (line) of `haystack` matches, before inversion."""
        if self.pattern is None:
            return not self.error
        if self.per_line:
            return any(map(self.pattern.search, haystack.split("\n")))
        return self.pattern.search(haystack) is not None

    def matches(self, haystack: str) -> bool:
        if self.error:
            return False
        if self.pattern is None:
            return True
        return self.found(haystack) != self.inverted

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

    A filter is scanned from the top of the display down (the start of
    `_ordered`, or its end when reversed). Until `scan` has covered every row,
    `_visible` holds the matches found so far, which are exactly the first
    rows of the display, and `len(view)` counts only those; `scanning` says
    the count is still growing. A narrowing keystroke does not rescan what the
    previous filter already ruled out: the previous matches become
    `_candidates`, the only rows that can match between the frontier and
    `_candidates_end`, and the scan reads them instead of `_ordered` there.
    """

    scan_slice_rows = 4096  # rows per scan slice: about 1-3 ms here

    def __init__(
        self,
        columns: tuple[Column, ...],
        *,
        clock: Callable[[], datetime] | None = None,
        labels: Labels | None = None,
    ) -> None:
        self.columns = columns
        self.clock = clock or (lambda: datetime.now(UTC))
        self.labels = labels  # foreign keys are searched by the names shown for them
        self.rows: dict[str, dict[str, Any]] = {}
        self.filter: RowFilter = RowFilter.parse("")
        self.filter_error = ""  # why the text last typed is not a filter (then unchanged)
        self.sort_column: str | None = None
        self.sort_reverse = False
        self.pinned: set[str] = set()  # keys shown first, whatever the sort
        self._haystacks: dict[str, str] = {}
        self._sort_keys: dict[str, tuple] = {}
        self._ordered: list[tuple] = []
        # The key of each `_ordered` entry, aligned with it: copying or slicing this is
        # far cheaper than reaching into 100k scattered tuples.
        self._ordered_keys: list[str] = []
        self._visible: list[str] = []
        # The last sort key the current filter has scanned; None once all rows are.
        self._frontier: tuple | None = None
        # While narrowing: keys (ascending) beyond the frontier, up to `_candidates_end`,
        # that an earlier, wider filter kept; nothing else there can match.
        self._candidates: list[str] = []
        self._candidates_end: tuple | None = None  # None: not narrowing
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
        """Every row the filter shows, in display order (finishes a scan in progress)."""
        self.finish_scan()
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
        """Change the filter. Only the start of the scan is done here; see `scan`.

        Text that is not a valid pattern leaves the current filter as it is and says
        why in `filter_error`.
        """
        new = RowFilter.parse(text)
        self.filter_error = new.error
        if new.error:
            return
        previous = self.filter
        self.filter = new
        if new.pattern is not None and previous.pattern is not None and new.narrows(previous):
            # Every row matching the new filter matched the old one: rescan only the old
            # matches (and the old candidates), then go on where the old scan stopped.
            if self.sort_reverse:
                candidates = self._candidates + self._visible
            else:
                candidates = self._visible + self._candidates
            if self._candidates_end is None:
                frontier = self._frontier
                self._candidates_end = self._everything_scanned() if frontier is None else frontier
            self._candidates = candidates
            self._visible = []
            self._frontier = self._nothing_scanned()
        else:
            self._refilter()

    @property
    def scanning(self) -> bool:
        """True while the filter has rows left to scan (so `len` is a lower bound)."""
        return self._frontier is not None

    def scan(self, *, seconds: float, want: int = 0) -> bool:
        """Scan the filter over more rows, in display order; True once every row is done.

        Stops after `seconds`, or as soon as `want` rows are shown if `want` is
        set, whichever comes first; each slice is a few thousand rows.
        """
        deadline = time.perf_counter() + seconds
        while self._frontier is not None and not (want and len(self._visible) >= want):
            self._scan_slice(self.scan_slice_rows)
            if time.perf_counter() >= deadline:
                break
        return self._frontier is None

    def finish_scan(self) -> None:
        while self._frontier is not None:
            self._scan_slice(self.scan_slice_rows * 8)

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
                self._hays = [hays[key] for key in self._ordered_keys]
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
        self._ordered_keys.insert(index, key)
        if self._hays is not None:
            self._hays.insert(index, self._haystack(key))
        if self._scanned(entry):
            if self.filter.pattern is None or self.filter.matches(self._haystack(key)):
                insort(self._visible, key, key=self._sort_key)
        elif self._among_candidates(entry):
            self._haystack(key)
            insort(self._candidates, key, key=self._sort_key)
        # else: the scan of `_ordered` will come to it

    def remove(self, key: str) -> None:
        self._remove_from_order(key)
        self.rows.pop(key, None)
        self._haystacks.pop(key, None)
        self._sort_keys.pop(key, None)

    # -- internals ------------------------------------------------------------------------

    def _haystack(self, key: str) -> str:
        """The row's searchable columns, lower-cased, one per line (so a match is in one)."""
        hay = self._haystacks.get(key)
        if hay is None:
            row = self.rows[key]
            if self._shown_search:
                now = self.clock()
                values = [
                    format_cell(column, row, now, self.labels) or None
                    if column.kind == "bool" or column.ref is not None
                    else cell_value(row, column.key)
                    for column in self._search_columns
                ]
            elif self._dotted_search:
                values = [cell_value(row, name) for name in self._search_keys]
            else:
                values = list(map(row.get, self._search_keys))
            texts = [str(v).replace("\n", " ") for v in values if v is not None]
            hay = "\n".join(texts).lower()
            self._haystacks[key] = hay
        return hay

    @cached_property
    def _dotted_search(self) -> bool:
        return any("." in key for key in self._search_keys)

    @cached_property
    def _shown_search(self) -> bool:
        """Some column is searched by what it shows (a flag's word, a foreign key's name)."""
        return any(c.kind == "bool" or c.ref is not None for c in self._search_columns)

    @cached_property
    def _search_columns(self) -> list[Column]:
        # What the user can read in the row; timestamps would only add noise ("z").
        kinds = ("text", "status", "number", "bool")
        return [c for c in self.columns if c.kind in kinds]

    @cached_property
    def _search_keys(self) -> list[str]:
        return [c.key for c in self._search_columns]

    def _sort_key(self, key: str) -> tuple:
        """A plain tuple that sorts ascending; display order reads it backwards when reversed.

        Pinned rows come first and missing values last in either direction, so
        their flags flip with the direction; the key is the final tie-breaker.
        """
        cached = self._sort_keys.get(key)
        if cached is None:
            value = cell_value(self.rows[key], self.sort_column) if self.sort_column else ""
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
        self._ordered_keys = [entry[-1] for entry in self._ordered]
        self._hays = None
        self._refilter()

    def _refilter(self) -> None:
        """Start the current filter's scan from the top of the display."""
        self._candidates = []
        self._candidates_end = None
        if self.filter.pattern is None:
            self._visible = list(self._ordered_keys)
            self._frontier = None
            return
        self._visible = []
        self._frontier = self._nothing_scanned()

    def _nothing_scanned(self) -> tuple:
        return _ABOVE_ALL if self.sort_reverse else _BELOW_ALL

    def _everything_scanned(self) -> tuple:
        return _BELOW_ALL if self.sort_reverse else _ABOVE_ALL

    def _scanned(self, entry: tuple) -> bool:
        frontier = self._frontier
        if frontier is None:
            return True
        return entry >= frontier if self.sort_reverse else entry <= frontier

    def _among_candidates(self, entry: tuple) -> bool:
        """True if `entry` lies in the stretch that only the candidates cover."""
        end = self._candidates_end
        if end is None:
            return False
        return entry >= end if self.sort_reverse else entry <= end

    def _next_slice(self, entries: list, count: int, key: Any = None) -> tuple[int, int, bool]:
        """The index range of the next `count` of `entries` past the frontier, in display
        order, and whether it reaches the end of them."""
        if self.sort_reverse:
            end = bisect_left(entries, self._frontier, key=key)
            start = max(0, end - count)
            return start, end, start == 0
        start = bisect_right(entries, self._frontier, key=key)
        end = min(len(entries), start + count)
        return start, end, end == len(entries)

    def _show_found(self, found: list[str]) -> None:
        """Matches of a slice join the shown rows, below those found before."""
        if self.sort_reverse:
            self._visible[:0] = found
        else:
            self._visible.extend(found)

    def _scan_candidates(self, count: int) -> None:
        """Check the next `count` candidates, up to the end of their stretch."""
        candidates, sort_key = self._candidates, self._sort_key
        start, end, exhausted = self._next_slice(candidates, count, key=sort_key)
        chunk = candidates[start:end]
        del candidates[start:end]  # candidates are only ever rows not scanned yet
        hays, keep = self._haystacks, not self.filter.inverted
        if self.filter.per_line:
            found = self.filter.found
            self._show_found([key for key in chunk if found(hays[key]) is keep])
        else:
            search = self.filter.pattern.search
            self._show_found([key for key in chunk if (search(hays[key]) is not None) is keep])
        if exhausted:
            stretch_end = self._candidates_end
            self._frontier = None if stretch_end == self._everything_scanned() else stretch_end
            self._candidates = []
            self._candidates_end = None
        else:
            self._frontier = sort_key(chunk[0] if self.sort_reverse else chunk[-1])

    def _scan_slice(self, count: int) -> None:
        """Scan the next `count` rows below the frontier and add their matches."""
        pattern, ordered = self.filter.pattern, self._ordered
        if pattern is None or self._frontier is None:
            self._frontier = None
            return
        if self._candidates_end is not None:
            self._scan_candidates(count)
            return
        start, end, exhausted = self._next_slice(ordered, count)
        keys = self._ordered_keys[start:end]
        if self._hays is not None:
            hays = self._hays[start:end]
        else:  # not warmed yet: build just this slice's haystacks
            hays = [self._haystack(key) for key in keys]
        keep = not self.filter.inverted
        if self.filter.per_line:  # a pattern that could span columns: each one on its own
            found = self.filter.found
            pairs = zip(keys, hays, strict=True)
            self._show_found([key for key, hay in pairs if found(hay) is keep])
        else:
            # One tight comprehension over aligned lists, with no per-row calls into Python.
            search = pattern.search
            pairs = zip(keys, hays, strict=True)
            self._show_found([key for key, hay in pairs if (search(hay) is not None) is keep])
        if exhausted:
            self._frontier = None
        else:
            self._frontier = ordered[start] if self.sort_reverse else ordered[end - 1]

    def _remove_from_order(self, key: str) -> None:
        if key not in self.rows:
            return
        entry = self._sort_key(key)
        index = bisect_left(self._ordered, entry)
        if index < len(self._ordered) and self._ordered[index] == entry:
            del self._ordered[index]
            del self._ordered_keys[index]
            if self._hays is not None:
                del self._hays[index]
        for keys in (self._visible, self._candidates):
            position = bisect_left(keys, entry, key=self._sort_key)
            if position < len(keys) and keys[position] == key:
                del keys[position]


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
