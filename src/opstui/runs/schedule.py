"""Schedules: which `later` / `cron` tick of a deployment is due, with croniter.

One parser serves the deployment form (`models.validate_cron`) and the runner, so
they cannot disagree about what an expression means. Expressions are standard
5-field cron (minute hour day-of-month month day-of-week, with lists, ranges,
steps and names) or an @macro, evaluated in UTC.

Missed ticks: a runner that was down fires the latest due tick only. `due_tick`
returns that tick and how many earlier ticks since the last fired one it skips.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_FIELDS = "minute hour day-of-month month day-of-week"
# Counting skipped ticks stops here: "more than 10000" is as good as the exact number.
_COUNT_LIMIT = 10_000


def validate_cron(expression: str) -> str:
    """The normalised expression, or ValueError with one line saying what is wrong."""
    expression = " ".join(str(expression).split())
    if expression.lower() in _MACROS:
        return expression.lower()
    parts = expression.split(" ")
    if len(parts) != 5:
        raise ValueError(f"cron needs 5 fields ({_FIELDS}), got {len(parts)}")
    try:
        croniter(expression, datetime(2026, 1, 1, tzinfo=UTC))
    except (CroniterBadCronError, CroniterBadDateError, CroniterError, ValueError) as exc:
        raise ValueError(f"cron {expression!r}: {_reason(exc)}") from None
    return expression


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    # croniter says "[expr] is not acceptable, out of range": keep the part after the expression.
    if text.startswith("[") and "]" in text:
        text = text.split("]", 1)[1].strip(" ,")
    if "out of range" in text:
        return "a value is out of range (minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-7)"
    if text in ("is not acceptable", ""):
        return "not a value, range, step or name in some field; e.g. */15 * * * *"
    return text.splitlines()[0]


@dataclass(frozen=True)
class DueTick:
    tick: datetime
    skipped: int  # earlier ticks after the last fired one, not fired (the runner was down)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def latest_tick(expression: str, now: datetime) -> datetime:
    """The latest cron tick at or before `now` (UTC)."""
    return croniter(validate_cron(expression), _aware(now)).get_prev(datetime)


def ticks_between(expression: str, after: datetime, before: datetime) -> int:
    """How many ticks fall strictly between `after` and `before` (capped at 10000)."""
    it = croniter(validate_cron(expression), _aware(after))
    count = 0
    while count < _COUNT_LIMIT:
        tick = it.get_next(datetime)
        if tick >= _aware(before):
            break
        count += 1
    return count


def due_tick(
    deployment: dict, now: datetime, last_fired: datetime | None, *, grace_seconds: float = 0
) -> DueTick | None:
    """The tick of `deployment` to fire now, or None.

    `later`: its scheduled_time once it has passed (repeat_count does not apply).
    `cron`: the latest tick at or before `now` that is after `last_fired` (and
    after the deployment was created, when it never fired). `repeat_count` is
    enforced by `queue_scheduled_run` in the database, which counts the runs.
    """
    now = _aware(now)
    kind = deployment.get("schedule_type")
    if kind == "later":
        when = _parse_time(deployment.get("scheduled_time"))
        if when is None or when > now or (last_fired is not None and last_fired >= when):
            return None
        return DueTick(when, 0)
    if kind != "cron" or not deployment.get("cron_expression"):
        return None
    try:
        tick = latest_tick(deployment["cron_expression"], now)
    except ValueError:
        return None
    reference = last_fired or _parse_time(deployment.get("created_at"))
    if reference is not None and tick <= _aware(reference):
        return None
    skipped = ticks_between(deployment["cron_expression"], reference, tick) if reference else 0
    if grace_seconds and last_fired is None and reference is None:
        skipped = 0
    return DueTick(tick, skipped)


def _parse_time(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return _aware(value)
    text = str(value).replace("Z", "+00:00")
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        return None


parse_time = _parse_time

__all__ = ["DueTick", "due_tick", "latest_tick", "parse_time", "ticks_between", "validate_cron"]
