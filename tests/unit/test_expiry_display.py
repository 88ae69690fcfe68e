"""An expiry written as a date means "valid through that day, tenant time" and is shown as that day
everywhere (console filter, H5 view, import report, messages), never as the next day's midnight."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from admin_ui.money import format_expiry
from admin_ui.rendering import format_day
from core.expiry import LAST_INSTANT, end_of_day, expiry_text, last_day
from core.inventory.importing.validation import parse_expiry

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_a_supplier_date_is_stored_as_the_next_local_midnight_and_shown_as_written() -> None:
    stored = parse_expiry("2027-06-30", SHANGHAI)
    assert stored == dt.datetime(2027, 6, 30, 16, 0, tzinfo=dt.UTC)  # 2027-07-01 00:00 in Shanghai
    assert expiry_text(stored, "Asia/Shanghai") == "2027-06-30"
    assert format_expiry(stored, "Asia/Shanghai") == "2027-06-30"
    assert format_day(stored, "Asia/Shanghai") == "2027-06-30"  # the console's ``day`` filter
    assert last_day(stored, SHANGHAI) == dt.date(2027, 6, 30)
    for written in ("2027/06/30", "20270630", "2027年6月30日"):
        assert expiry_text(parse_expiry(written, SHANGHAI), SHANGHAI) == "2027-06-30", written


def test_the_code_is_valid_all_of_that_day_and_expired_at_its_end() -> None:
    stored = end_of_day(dt.date(2027, 6, 30), "Asia/Shanghai")
    last_second = dt.datetime(2027, 6, 30, 23, 59, 59, tzinfo=SHANGHAI)
    assert last_second < stored  # still valid
    assert not dt.datetime(2027, 7, 1, 0, 0, tzinfo=SHANGHAI) < stored  # expired (now >= expires_at)


def test_a_time_of_day_is_kept_and_legacy_end_of_day_rows_show_their_day() -> None:
    with_time = dt.datetime(2027, 6, 30, 18, 0, tzinfo=SHANGHAI)
    assert expiry_text(with_time, "Asia/Shanghai") == "2027-06-30 18:00"
    legacy = dt.datetime.combine(dt.date(2027, 6, 30), dt.time.max, tzinfo=SHANGHAI).astimezone(dt.UTC)
    assert expiry_text(legacy, "Asia/Shanghai") == "2027-06-30"
    assert expiry_text(None, "Asia/Shanghai") is None and format_expiry(None, "Asia/Shanghai") == "—"


def test_the_same_instant_in_another_zone_is_that_zones_day() -> None:
    stored = end_of_day(dt.date(2027, 6, 30), "UTC")
    assert expiry_text(stored, "UTC") == "2027-06-30"
    assert expiry_text(stored, "Asia/Shanghai") == "2027-07-01 08:00"  # not a whole day there


@pytest.mark.parametrize("zone_name", ["Asia/Shanghai", "America/New_York", "UTC"])
def test_never_expires_written_as_9999_12_31_is_stored_and_shown_as_that_day(zone_name: str) -> None:
    """Supplier files write "never expires" as 9999-12-31: the day after it does not exist, so it is stored as
    the calendar's last instant and shown as the date written, in every zone."""
    for written in ("9999-12-31", "99991231", "9999/12/31"):
        stored = parse_expiry(written, ZoneInfo(zone_name))
        assert stored == LAST_INSTANT
        assert expiry_text(stored, zone_name) == "9999-12-31"


def test_a_time_at_the_calendars_start_is_a_readable_problem_not_a_crash() -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_expiry("0001-01-01 00:00", ZoneInfo("Asia/Shanghai"))
    with pytest.raises(ValueError, match="out of range"):
        parse_expiry("9999-12-31 23:59", ZoneInfo("America/New_York"))
