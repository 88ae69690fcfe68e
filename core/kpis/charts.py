"""Server-drawn SVG charts (line and horizontal bar) for the KPI pages: inline, no script, no CSS.

Hand-written rather than pygal: pygal's output carries an inline ``<script>`` even with its JS disabled, a
random chart id (output differs on every call), ~15 KB of CSS per chart and a monospace font stack without
CJK fonts. These two charts need ~110 lines: every chart has ``role="img"``, a ``<title>`` and a ``<desc>``
summarising the data (screen readers read it), text labels on the axes and bars, a native tooltip
(``<title>``) per bar and point, and a font stack with CJK fonts. Values are integers (fen, counts); the
caller gives the function that formats them (``¥12.50``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

__all__ = ["PALETTE", "Series", "bar_chart", "line_chart"]

FONT = "system-ui, -apple-system, 'PingFang SC', 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif"
PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626")
FLAGGED = "#dc2626"
Format = Callable[[int], str]


@dataclass(frozen=True)
class Series:
    """One line of a line chart: a name (legend) and one integer per x label."""

    name: str
    values: Sequence[int]


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 11, fill: str = "#374151") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}">'
            f"{escape(text)}</text>")


def _open(chart_id: str, width: int, height: int, title: str, desc: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
            f'role="img" aria-labelledby="{chart_id}-t {chart_id}-d" font-family={quoteattr(FONT)} '
            f'id={quoteattr(chart_id)}><title id="{chart_id}-t">{escape(title)}</title>'
            f'<desc id="{chart_id}-d">{escape(desc)}</desc>')


def line_chart(chart_id: str, title: str, labels: Sequence[str], series: Sequence[Series], fmt: Format = str,
               *, width: int = 640, height: int = 220, tick_every: int = 0, mark_peaks: bool = False) -> str:
    """A line chart of integer series over ``labels`` (days); axis labels at zero, the top and the ends (and
    every ``tick_every`` label when given); ``mark_peaks`` writes each series' highest value and its last
    one next to their points."""
    left, right, top, bottom = 84, 12, 28, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for v in s.values]
    hi, lo = max([0, *values]), min([0, *values])
    span = (hi - lo) or 1
    n = len(labels)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: int) -> float:
        return top + plot_h * (hi - v) / span

    summary = "; ".join(f"{s.name}: {fmt(sum(s.values))}" for s in series)
    desc = f"{labels[0]} – {labels[-1]}. {summary}" if labels else summary
    out = [_open(chart_id, width, height, title, desc)]
    out.append(f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}" stroke="#9ca3af"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{width - right}" y2="{top}" stroke="#e5e7eb"/>')
    out.append(_text(left - 6, top + 4, fmt(hi), anchor="end"))
    out.append(_text(left - 6, y(0) + 4, fmt(0), anchor="end"))
    if lo < 0:
        out.append(_text(left - 6, y(lo) + 4, fmt(lo), anchor="end"))
    ticks = {0, n - 1, *range(0, n, tick_every)} if tick_every else {0, n // 2, n - 1}
    for i in sorted(ticks) if n else []:
        anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
        out.append(_text(x(i), height - 12, labels[i], anchor=anchor))
    for k, s in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s.values))
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        if n <= 90:
            out.extend(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}">'
                       f"<title>{escape(f'{labels[i]} {s.name}: {fmt(v)}')}</title></circle>"
                       for i, v in enumerate(s.values))
        if mark_peaks and n:
            peak = max(range(n), key=lambda i: (s.values[i], i))
            for i in sorted({peak, n - 1}):
                if s.values[i] or i == n - 1:
                    out.append(_text(x(i), y(s.values[i]) - 6, fmt(s.values[i]), anchor="end" if i == n - 1 else
                                     "middle", size=10, fill=colour))
        lx = left + k * 150
        out.append(f'<rect x="{lx}" y="8" width="12" height="4" fill="{colour}"/>')
        out.append(_text(lx + 16, 14, s.name))
    out.append("</svg>")
    return "".join(out)


def bar_chart(chart_id: str, title: str, labels: Sequence[str], values: Sequence[int], fmt: Format = str,
              *, flagged: Sequence[bool] = (), width: int = 640) -> str:
    """Horizontal bars, one per label (the label at the left, the formatted value after the bar); bars of
    ``flagged`` items are red."""
    left, right, row, top = min(150, width // 3), 90, 26, 8
    height = top * 2 + row * max(1, len(labels))
    hi = max([0, *values]) or 1
    plot_w = width - left - right
    desc = "; ".join(f"{label}: {fmt(v)}" for label, v in zip(labels, values, strict=True))
    out = [_open(chart_id, width, height, title, desc or title)]
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        y = top + i * row
        w = plot_w * max(0, v) / hi
        colour = FLAGGED if i < len(flagged) and flagged[i] else PALETTE[0]
        short = label if len(label) <= 14 else label[:13] + "…"
        out.append(_text(left - 8, y + row / 2 + 4, short, anchor="end"))
        out.append(f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" fill="{colour}">'
                   f"<title>{escape(f'{label}: {fmt(v)}')}</title></rect>")
        out.append(_text(left + w + 6, y + row / 2 + 4, fmt(v)))
    out.append("</svg>")
    return "".join(out)
