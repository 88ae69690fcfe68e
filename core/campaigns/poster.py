"""A printable campaign poster (SVG): the tenant's name, the campaign's name, the product, and a QR code of the
campaign's short link with the link written under it.

SVG needs no image library and prints sharp at any size; the text is laid out here (SVG does not wrap): a
line holds as many characters as fit the width, counting a CJK character as a full em and Latin as about half,
and a name longer than three lines ends in "…". The poster speaks to customers, so its few fixed words are
Chinese, like the H5 pages.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from xml.sax.saxutils import escape

import segno
from sqlalchemy.ext.asyncio import AsyncSession

from core.campaigns.services import campaign_out, get_campaign
from core.catalog.models import Product
from core.db.session import get_scoped
from core.kernel import Kernel
from tenants.models import Tenant

WIDTH, HEIGHT = 600, 860
_MARGIN = 48
_FONT = "PingFang SC, Microsoft YaHei, Noto Sans CJK SC, Source Han Sans SC, sans-serif"
_QR_SIZE = 320


def _em(ch: str) -> float:
    """The width of ``ch`` in ems: full for wide (CJK) characters, about half for the rest."""
    return 1.0 if unicodedata.east_asian_width(ch) in ("W", "F") else 0.56


def _units(text: str) -> list[str]:
    """Break points: every wide (CJK) character stands alone, a run of other characters is a word, and a
    single space separates words."""
    return re.findall(
        r"\s|[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]|[^\s\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]+",
        " ".join(text.split()),
    )


def _width(text: str, size: int) -> float:
    return sum(_em(ch) for ch in text) * size


def wrap(text: str, size: int, width: int = WIDTH - 2 * _MARGIN, max_lines: int = 3) -> list[str]:
    """``text`` cut into lines that fit ``width`` at font ``size`` (between words, or inside a word longer
    than a line); the last line ends in "…" when the text is cut short."""
    lines: list[str] = []
    line = ""
    for unit in _units(text):
        if _width(line + unit, size) <= width:
            line += unit
            continue
        if line.strip():
            lines.append(line.rstrip())
        line = "" if unit == " " else unit
        while _width(line, size) > width:  # a word longer than a whole line
            cut = max(1, int(width / (_em(line[0]) * size)))
            lines.append(line[:cut])
            line = line[cut:]
    if line.strip():
        lines.append(line.rstrip())
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(len(lines[-1]) - 1, 0)] + "…"
    return lines


def _text(
    lines: list[str], y: int, size: int, *, weight: str = "normal", fill: str = "#111"
) -> tuple[str, int]:
    out = []
    for line in lines:
        y += int(size * 1.3)
        out.append(
            f'<text x="{WIDTH // 2}" y="{y}" font-size="{size}" font-weight="{weight}" fill="{fill}" '
            f'text-anchor="middle">{escape(line)}</text>'
        )
    return "".join(out), y


def _qr(content: str, x: int, y: int) -> str:
    svg: str = segno.make(content, error="m", micro=False).svg_inline(
        scale=4, border=2, dark="#111", light="#fff", omitsize=True
    )
    return svg.replace("<svg ", f'<svg x="{x}" y="{y}" width="{_QR_SIZE}" height="{_QR_SIZE}" ', 1)


def poster_svg(*, tenant_name: str, campaign_name: str, product_name: str, short_url: str) -> str:
    """The poster as a standalone SVG document (UTF-8 text)."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{_FONT}">',
        f"<title>{escape(campaign_name)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        f'<rect width="{WIDTH}" height="12" fill="#c8102e"/>',
    ]
    y = 24
    if tenant_name:
        text, y = _text(wrap(tenant_name, 22, max_lines=1), y, 22, fill="#555")
        parts.append(text)
    text, y = _text(wrap(campaign_name, 40), y + 12, 40, weight="bold")
    parts.append(text)
    if product_name:
        text, y = _text(wrap(product_name, 24, max_lines=2), y + 8, 24, fill="#333")
        parts.append(text)
    qr_y = max(y + 28, 300)
    parts.append(_qr(short_url, (WIDTH - _QR_SIZE) // 2, qr_y))
    text, y = _text(["扫码领取"], qr_y + _QR_SIZE + 4, 30, weight="bold", fill="#c8102e")
    parts.append(text)
    text, _y = _text(wrap(short_url, 22, max_lines=2), y + 4, 22, fill="#555")
    parts.append(text)
    parts.append("</svg>")
    return "\n".join(parts)


async def campaign_poster(session: AsyncSession, kernel: Kernel, campaign_id: uuid.UUID) -> tuple[str, str]:
    """(file name, SVG) of a campaign's poster; ``404 campaign_not_found`` as the campaign's other reads.

    The QR carries the short link (fewer modules than the signed H5 link: it scans from farther away)."""
    out = await campaign_out(session, kernel, campaign_id)
    campaign = await get_campaign(session, campaign_id)
    product = await get_scoped(session, Product, out.product_id)
    tenant = await session.get(Tenant, campaign.tenant_id)
    svg = poster_svg(
        tenant_name=tenant.name if tenant is not None else "",
        campaign_name=out.name,
        product_name=product.name_zh if product is not None else "",
        short_url=out.short_url or out.url,
    )
    return f"poster-{out.ref}.svg", svg
