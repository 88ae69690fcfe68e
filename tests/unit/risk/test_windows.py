"""Tenant-local windows, subject keys and masks of the risk engine."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from core.risk.counters import mask, normalize_ip, subject_key, window_bounds, zone
from core.risk.engine import counter_key, dimensions
from core.risk.gate import RiskSubject

SH = zone("Asia/Shanghai")
NY = zone("America/New_York")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("now", "window", "bucket", "ends"),
    [
        (utc(2026, 1, 31, 15, 59, 59), "day", "2026-01-31", utc(2026, 1, 31, 16)),
        (utc(2026, 1, 31, 16, 0, 0), "day", "2026-02-01", utc(2026, 2, 1, 16)),
        (utc(2026, 1, 31, 15, 59, 59), "month", "2026-01", utc(2026, 1, 31, 16)),
        (utc(2026, 1, 31, 16, 0, 0), "month", "2026-02", utc(2026, 2, 28, 16)),
        (utc(2026, 12, 31, 16, 0, 0), "month", "2027-01", utc(2027, 1, 31, 16)),
        (utc(2028, 2, 28, 16, 0, 0), "month", "2028-02", utc(2028, 2, 29, 16)),  # leap year
    ],
)
def test_shanghai_days_and_months(now, window, bucket, ends):
    assert window_bounds(now, SH, window) == (bucket, ends)


def test_days_follow_daylight_saving_time():
    # 8 March 2026: New York springs forward; the local day is 23 hours long
    bucket, ends = window_bounds(utc(2026, 3, 8, 12), NY, "day")
    assert bucket == "2026-03-08" and ends == utc(2026, 3, 9, 4)
    assert window_bounds(utc(2026, 3, 8, 4, 59), NY, "day")[0] == "2026-03-07"


def test_unknown_timezone_falls_back_to_shanghai_and_unknown_window_is_an_error():
    assert zone("Mars/Olympus") == SH
    with pytest.raises(ValueError):
        window_bounds(utc(2026, 1, 1), SH, "week")


def test_masks_and_keys_never_spell_out_the_subject():
    assert mask("ip", "203.0.113.7") == "203.0.113.*"
    assert mask("ip", "2001:db8:1:2:3:4:5:6") == "2001:0db8:0001:0002:*"
    assert mask("device", "abcdefghijkl") == "abcd…kl" and mask("device", "short") == "sh…"
    assert mask("phone", "f" * 64) == "phone#ffffffff"
    key = subject_key("ip", "203.0.113.7")
    assert len(key) == 64 and "203" not in key and key != subject_key("device", "203.0.113.7")
    assert normalize_ip(" 2001:DB8::0001 ") == "2001:db8::1" and normalize_ip("garbage") == "garbage"


def test_dimensions_and_counter_keys():
    m, c = uuid.uuid4(), uuid.uuid4()
    dims = dimensions(
        RiskSubject(member_id=m, phone_digest="d" * 64, ip="10.0.0.1", device_id=" dev-1 ", client_id=c)
    )
    assert dims == {
        "member": str(m),
        "phone": "d" * 64,
        "ip": "10.0.0.1",
        "device": "dev-1",
        "client": str(c),
    }
    assert dimensions(RiskSubject(ip="  ", device_id="")) == {}
    key = counter_key("grant", "member", "month", "2026-01", str(m))
    assert key.startswith("grant:member:month:2026-01:") and len(key) <= 120
