"""TableView: filtering, sorting and live changes agree with a brute-force recomputation."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime

from opstui.resources import RESOURCES
from opstui.views import RowFilter, TableView, format_cell, human_span

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SPEC = RESOURCES["hosts"]


def _row(i: int, rng: random.Random) -> dict:
    return {
        "id": f"h{i:05d}",
        "name": rng.choice(["web", "db", "cache", "edge", None])
        and f"{rng.choice(['web', 'db', 'cache'])}-{i}",
        "status": rng.choice(["online", "offline", "pending", None]),
        "ip": f"192.0.2.{i % 250}",
        "port": rng.choice([22, 2222, 5985, None]),
        "user": "ops",
        "is_windows": rng.random() < 0.3,
        "type": "ssh",
        "updated_at": "2026-11-20T11:00:00Z",
    }


def _cells(row: dict) -> list[str]:
    """What each searchable column of a host shows, lower-cased (None: nothing)."""
    cells = []
    for column in SPEC.columns:
        value = row.get(column.key)
        if column.kind == "bool":
            value = "windows" if value else "linux"
        if column.kind in ("text", "status", "number", "bool") and value is not None:
            cells.append(str(value).lower())
    return cells


def _is_subsequence(needle: str, hay: str) -> bool:
    letters = iter(hay)
    return all(char in letters for char in needle)


def _row_matches(text: str, row: dict) -> bool:
    """Brute force: the filter against each column on its own; any one column will do."""
    body = text.strip()
    inverted = body.startswith("!")
    body = body[1:].strip() if inverted else body
    if not body:
        return True
    if any(char in ".*+?[](){}|^$\\" for char in body):
        found = any(re.search(body, cell, re.IGNORECASE) for cell in _cells(row))
    else:
        found = any(_is_subsequence(body.lower(), cell) for cell in _cells(row))
    return found != inverted


def _expected(view: TableView) -> list[str]:
    """Brute force, written independently of the view's sort keys and haystacks."""
    keys = [k for k in view.rows if _row_matches(view.filter.text, view.rows[k])]

    def value(key):
        v = view.rows[key].get(view.sort_column) if view.sort_column else ""
        if isinstance(v, str):
            v = v.lower()
        return v

    pinned = [k for k in keys if k in view.pinned]
    rest = [k for k in keys if k not in view.pinned]
    ordered = []
    for group in (pinned, rest):
        # Reversed means the whole ascending order read backwards (ties included),
        # except that pinned rows stay first and missing values stay last.
        present = sorted(
            (k for k in group if value(k) is not None),
            key=lambda k: (value(k), k),
            reverse=view.sort_reverse,
        )
        missing = sorted((k for k in group if value(k) is None), reverse=view.sort_reverse)
        ordered += present + missing
    return ordered


def test_live_changes_keep_the_view_equal_to_a_full_recompute():
    rng = random.Random(7)
    view = TableView(SPEC.columns, clock=lambda: NOW)
    view.set_rows({f"h{i:05d}": _row(i, rng) for i in range(300)})
    for sort_column, reverse, text in [
        ("name", False, ""),
        ("port", True, "web"),
        ("status", False, "!db"),
        (None, False, "192.*5$"),
        ("name", False, "^web-.*1$"),
        ("ip", True, "online$"),
        ("port", False, "ops\\s+ssh"),  # could span two columns: checked one by one
        ("name", True, "!^(web|db)-"),
    ]:
        view.set_sort(sort_column, reverse)
        view.set_filter(text)
        view.set_pinned({"h00003", "h00150"})
        assert view.keys == _expected(view)
        for step in range(200):
            key = f"h{rng.randrange(400):05d}"
            if rng.random() < 0.3:
                view.remove(key)
            else:
                row = _row(int(key[1:]), rng)
                view.upsert(key, row)
            if step % 25 == 0:
                assert view.keys == _expected(view), (sort_column, text, step)
        assert view.keys == _expected(view)


def _shown(view: TableView) -> list[str]:
    """What the display shows now, without finishing a scan in progress."""
    return [view.key_at(i) for i in range(len(view))]


def test_a_scan_in_slices_shows_the_top_of_the_result_and_survives_live_changes():
    rng = random.Random(11)
    view = TableView(SPEC.columns, clock=lambda: NOW)
    view.scan_slice_rows = 17
    view.set_rows({f"h{i:05d}": _row(i, rng) for i in range(600)})
    for sort_column, reverse, texts in [
        ("name", True, ["w", "we", "web"]),
        ("port", False, ["c", "!db"]),
        ("status", True, ["192.*5$", "o"]),
        ("name", False, ["^c", "^ca", "^cache-\\d+$", "linux$"]),
        (None, False, ["e", "ed", "edg", "edge-", "x"]),
        ("ip", True, ["zzz", "zzzz", "1"]),  # narrowing from nothing found
    ]:
        view.set_sort(sort_column, reverse)
        for number, text in enumerate(texts, 1):
            # The next keystroke comes while this scan is half done (the narrowing
            # case included); only the last one is scanned to the end.
            view.set_filter(text)
            last = number == len(texts)
            step = 0
            while view.scanning and (last or step < 5):
                shown = _shown(view)
                assert shown == _expected(view)[: len(shown)], (text, step)
                key = f"h{rng.randrange(700):05d}"
                if rng.random() < 0.3:
                    view.remove(key)
                else:
                    view.upsert(key, _row(int(key[1:]), rng))
                view.scan(seconds=0)
                step += 1
            assert step >= 5, "the scan should take many slices"
        assert _shown(view) == _expected(view), texts
        view.set_filter("")
        assert not view.scanning and _shown(view) == _expected(view)


def test_scan_stops_once_a_screenful_is_found():
    rng = random.Random(3)
    view = TableView(SPEC.columns, clock=lambda: NOW)
    view.scan_slice_rows = 10
    view.set_rows({f"h{i:05d}": _row(i, rng) for i in range(500)})
    view.set_filter("o")  # matches nearly every row ("ops")
    assert view.scan(seconds=60, want=25) is False
    assert 25 <= len(view) <= 35
    assert _shown(view) == _expected(view)[: len(view)]
    assert view.scan(seconds=60) is True and _shown(view) == _expected(view)


def test_filter_kinds():
    assert RowFilter.parse("wb1").matches("web-1")  # fuzzy: letters in order
    assert not RowFilter.parse("bw").matches("web-1")
    assert RowFilter.parse("^db-\\d+$").matches("db-12")
    assert not RowFilter.parse("^db-\\d+$").matches("xdb-12")
    assert RowFilter.parse("!web").matches("db-1")
    assert not RowFilter.parse("!web").matches("web-1")
    broken = RowFilter.parse("web(")
    assert broken.error == "invalid pattern: missing ), unterminated subpattern at 3"
    assert not broken.matches("a web( b")


def _view(*rows: dict) -> TableView:
    view = TableView(SPEC.columns, clock=lambda: NOW)
    view.set_rows({row["id"]: {"type": "ssh", "user": "ops", **row} for row in rows})
    return view


def test_the_filter_matches_each_column_on_its_own():
    view = _view(
        {"id": "a", "name": "k8s-cp-01", "status": "online"},
        {"id": "b", "name": "lab-web-01", "status": "offline"},
        {"id": "c", "name": "lab-web-02", "status": "online", "is_windows": True},
    )
    for text, expected in [
        ("^lab-.*01$", ["b"]),  # a whole name, not the row's columns run together
        ("online$", ["a", "c"]),  # a status
        ("k8n", []),  # fuzzy letters all from one column: "n" is only in the status
        ("k8s", ["a"]),
        ("ssh\\s+online", []),  # a pattern that could span columns does not
        ("!^lab", ["a"]),
        ("^windows$", ["c"]),  # a flag is searched by the word shown for it
    ]:
        view.set_filter(text)
        assert sorted(view.keys) == expected, text


def test_an_invalid_pattern_says_why_and_leaves_the_filter_as_it_was():
    view = _view({"id": "a", "name": "web-1"}, {"id": "b", "name": "db-1"})
    view.set_filter("^web")
    view.set_filter("^web[a-")
    assert view.filter_error == "invalid pattern: unterminated character set at 4"
    assert view.filter.text == "^web" and view.keys == ["a"]
    view.set_filter("^web[a-z]?-")
    assert view.filter_error == "" and view.keys == ["a"]


def test_narrowing_filter_reuses_the_previous_result():
    rng = random.Random(1)
    view = TableView(SPEC.columns, clock=lambda: NOW)
    view.set_rows({f"h{i:05d}": _row(i, rng) for i in range(200)})
    view.set_filter("we")
    wide = list(view.keys)
    view.set_filter("web")
    assert set(view.keys) <= set(wide)
    assert view.keys == _expected(view)


def test_cells_format_times_durations_and_flags():
    columns = {c.key: c for c in RESOURCES["deployments"].columns}
    row = {
        "started_at": "2026-11-20T11:58:30Z",
        "completed_at": None,
        "created_at": "2026-11-18T12:00:00Z",
        "host_ids": ["a", "b", "c"],
    }
    assert format_cell(columns["completed_at"], row, NOW) == "1m30s"
    assert format_cell(columns["created_at"], row, NOW) == "2d0h"
    assert format_cell(columns["host_ids"], row, NOW) == "3"
    assert human_span(59) == "59s" and human_span(3 * 3600 + 60) == "3h01m"


def test_host_age_is_from_creation_and_the_last_check_has_its_own_column():
    columns = {c.label: c for c in RESOURCES["hosts"].columns}
    # A health check a minute ago touched the row (updated_at); the host is 3 days old.
    row = {
        "created_at": "2026-11-17T12:00:00Z",
        "updated_at": "2026-11-20T11:59:00Z",
        "last_checked_at": "2026-11-20T11:59:00Z",
    }
    assert format_cell(columns["AGE"], row, NOW) == "3d0h"
    assert format_cell(columns["CHECKED"], row, NOW) == "1m00s"
    assert format_cell(columns["CHECKED"], {"last_checked_at": None}, NOW) == ""
