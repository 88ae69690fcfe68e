"""Expiry instants and how people read them: one rule for the console, the H5 pages, reports and messages.

An expiry is stored as one UTC instant, ``expires_at``, and a code is expired once ``now >= expires_at``
(FEFO, the expiry sweep and the claim pages compare instants, nothing else). A date written without a time
— a supplier file's ``2027-06-30``, a batch or product expiry typed in a date field — means "valid through
the end of that day in the tenant's timezone", so it is stored as the start of the next local day
(:func:`end_of_day`, exclusive).

:func:`expiry_text` shows such an instant as the date the supplier wrote (``2027-06-30``, not
``2027-07-01 00:00``); an instant with a real time of day keeps it (``2027-06-30 18:00``). Rows imported
before this rule were stored as the day's last microsecond (``23:59:59.999999`` local); they are shown as
that day too.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_ZONE = "Asia/Shanghai"
LAST_INSTANT = dt.datetime.max.replace(tzinfo=dt.UTC)


def zone(tz: str | None) -> ZoneInfo:
    """The IANA zone ``tz``; the default zone when it is empty or unknown."""
    try:
        return ZoneInfo(tz or DEFAULT_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_ZONE)


def end_of_day(day: dt.date, tz: str | ZoneInfo) -> dt.datetime:
    """The expiry instant of "valid through ``day``": the first instant of the next day in ``tz``, in UTC."""
    where = tz if isinstance(tz, ZoneInfo) else zone(tz)
    try:
        start_next = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=where)
        return start_next.astimezone(dt.UTC)
    except OverflowError:  # 9999-12-31, how supplier files often write "never expires": the last instant there is
        return LAST_INSTANT


def _local(value: dt.datetime, tz: str | ZoneInfo) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(tz if isinstance(tz, ZoneInfo) else zone(tz))
    except OverflowError:  # the calendar's last hours east of UTC (LAST_INSTANT): read them in UTC
        return value


def is_whole_day(value: dt.datetime, tz: str | ZoneInfo) -> bool:
    """Whether ``value`` ends a whole day in ``tz`` (local midnight, or a legacy ``23:59:59.999999``)."""
    t = _local(value, tz).time()
    return t == dt.time() or t >= dt.time(23, 59, 59, 999_000)


def last_day(value: dt.datetime | None, tz: str | ZoneInfo) -> dt.date | None:
    """The last day on which ``value`` is still valid, in ``tz`` (the inverse of :func:`end_of_day`)."""
    if value is None:
        return None
    local = _local(value, tz)
    try:
        return (local - dt.timedelta(microseconds=1)).date()
    except OverflowError:  # 0001-01-01 00:00: no earlier instant exists
        return local.date()


def expiry_text(value: dt.datetime | None, tz: str | ZoneInfo) -> str | None:
    """``2027-06-30`` for an instant that ends a whole day in ``tz`` (the day the supplier wrote),
    ``2027-06-30 18:00`` for one with a time of day; None for no expiry."""
    if value is None:
        return None
    if value.replace(tzinfo=value.tzinfo or dt.UTC) == LAST_INSTANT:  # "9999-12-31" in any zone
        return dt.date.max.isoformat()
    if is_whole_day(value, tz):
        day = last_day(value, tz)
        assert day is not None
        return day.isoformat()
    return _local(value, tz).strftime("%Y-%m-%d %H:%M")
