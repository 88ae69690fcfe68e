"""KPI flags decided on integers exactly at their thresholds; SVG charts well-formed, accessible, CJK-safe."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from admin_ui.kpis_pages import percent, times
from admin_ui.money import format_money
from core.errors import ValidationFailed
from core.kpis.charts import Series, bar_chart, line_chart
from core.kpis.queries import _Figures, _kpis, day_bounds, window_days
from core.kpis.schemas import ChannelKpis, Ratio

SVG = "{http://www.w3.org/2000/svg}"


def _k(**figures: int) -> ChannelKpis:
    return _kpis(None, "", "", _Figures(**figures), 30, [])  # type: ignore[arg-type]  # ints only


@pytest.mark.parametrize(("cost", "net", "flagged"), [
    (1500, 10000, False),   # exactly 15%: not above
    (1501, 10000, True),
    (0, 0, False),
    (1, 0, True),           # a cost with no net sales at all
])
def test_split_cost_flag_above_15_percent(cost: int, net: int, flagged: bool) -> None:
    k = _k(gross=net, split_cost=cost)
    assert k.split_cost.flagged is flagged


@pytest.mark.parametrize(("refunded", "gross", "flagged"), [(200, 10000, True), (199, 10000, False), (0, 0, False)])
def test_refund_rate_flag_from_2_percent(refunded: int, gross: int, flagged: bool) -> None:
    assert _k(gross=gross, refunded=refunded).refund_rate.flagged is flagged


@pytest.mark.parametrize(("complained", "orders", "flagged"), [(1, 50, True), (1, 51, False), (0, 0, False)])
def test_complaint_rate_flag_from_2_percent(complained: int, orders: int, flagged: bool) -> None:
    k = _k(orders=orders, complained=complained)
    assert k.complaint_rate.flagged is flagged


@pytest.mark.parametrize(("cost", "stock", "flagged"), [
    (30000, 10000, False),  # exactly 3 a year: the aim is met
    (29999, 10000, True),
    (5, 0, False),          # no stock: no turnover, no flag
])
def test_turnover_flag_below_three_a_year(cost: int, stock: int, flagged: bool) -> None:
    k = _kpis(None, "", "", _Figures(cost_of_sold=cost, stock_value=stock), 365, [])
    assert (k.turnover.numerator, k.turnover.flagged) == (cost, flagged)


def test_turnover_is_annualised_from_the_window() -> None:
    k = _k(cost_of_sold=2400, stock_value=7800)
    assert (k.turnover.numerator, k.turnover.value) == (2400 * 365 // 30, 3.7436)


def test_margin_flag_when_negative() -> None:
    k = _kpis(None, "", "", _Figures(gross=1000, tenant_net=500, cost_of_sold=600), 30, [])
    assert (k.margin_fen, k.margin.flagged) == (-100, True)
    assert percent(k.margin) == "-10.00%"


def test_percent_and_times_format_exactly() -> None:
    assert percent(Ratio(numerator=460, denominator=4000, value=0.115)) == "11.50%"
    assert percent(Ratio(numerator=1, denominator=3, value=0.3333)) == "33.33%"
    assert percent(Ratio(numerator=2, denominator=3, value=0.6667)) == "66.67%"
    assert percent(Ratio(numerator=0, denominator=0, value=None)) == "—"
    assert times(Ratio(numerator=29200, denominator=7800, value=3.7436)) == "3.74×"
    assert times(Ratio(numerator=1, denominator=0, value=None)) == "—"


def test_windows_and_day_bounds() -> None:
    import datetime as dt

    assert [window_days(d) for d in (7, 30, 90, 365)] == [7, 30, 90, 365]
    with pytest.raises(ValidationFailed) as err:
        window_days(31)
    assert err.value.code == "kpi_window_unknown"
    now = dt.datetime(2026, 3, 29, 12, 0, tzinfo=dt.UTC)  # Europe/Berlin moves to summer time on the 29th
    bounds = day_bounds(now, "Europe/Berlin", 2)
    assert [b[0] for b in bounds] == ["2026-03-28", "2026-03-29"]
    assert bounds[0][1] == dt.datetime(2026, 3, 27, 23, 0, tzinfo=dt.UTC)
    assert bounds[1][1] == dt.datetime(2026, 3, 28, 23, 0, tzinfo=dt.UTC)
    assert bounds[1][2] == dt.datetime(2026, 3, 29, 22, 0, tzinfo=dt.UTC)  # a 23-hour day
    shanghai = day_bounds(now, "Asia/Shanghai", 7)
    assert shanghai[-1][0] == "2026-03-29" and len(shanghai) == 7


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and desc is not None and title.text
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert root.find(f".//{SVG}script") is None
    return root


def test_line_chart_is_well_formed_with_cjk_labels_and_tooltips() -> None:
    labels = ["12-01", "12-02", "12-03"]
    svg = line_chart("c1", "每日销售 <&>", labels, [Series("毛额", [1250, 0, 3300]), Series("净额", [1000, 0, 3300])],
                     format_money)
    root = _parse(svg)
    assert root.find(f"{SVG}title").text == "每日销售 <&>"  # type: ignore[union-attr]  # found above
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "¥33.00" in texts and "¥0.00" in texts and "12-01" in texts and "12-03" in texts and "毛额" in texts
    assert len(root.findall(f"{SVG}polyline")) == 2
    tips = [c.find(f"{SVG}title").text for c in root.iter(f"{SVG}circle")]  # type: ignore[union-attr]  # each has one
    assert "12-01 毛额: ¥12.50" in tips
    assert "毛额: ¥45.50" in (root.find(f"{SVG}desc").text or "")  # type: ignore[union-attr]  # found above


def test_line_chart_of_a_year_has_no_points_and_handles_all_zero() -> None:
    root = _parse(line_chart("c2", "Year", [f"d{i}" for i in range(365)], [Series("net", [0] * 365)]))
    assert root.find(f".//{SVG}circle") is None and root.find(f"{SVG}polyline") is not None
    _parse(line_chart("c3", "Empty", [], []))


def test_bar_chart_flags_and_escapes() -> None:
    svg = bar_chart("b1", "渠道净销售", ["抖音小店 <b>", "美团"], [5000, 0], format_money, flagged=[True, False])
    root = _parse(svg)
    rects = root.findall(f"{SVG}rect")
    assert [r.get("fill") for r in rects] == ["#dc2626", "#2563eb"]
    assert rects[1].get("width") == "0.0"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "抖音小店 <b>" in texts and "¥50.00" in texts
    _parse(bar_chart("b2", "None", [], [], format_money))
