"""QR codes rendered on the server as inline SVG (segno): no image request, no script, nothing cached."""

from __future__ import annotations

import segno


def qr_svg(content: str, *, scale: int = 5, label: str = "QR") -> str:
    """An ``<svg>`` element (markup, safe to embed) encoding ``content`` with medium error correction.

    The SVG scales to its container (``viewBox``); ``label`` becomes its accessible name.
    """
    qr = segno.make(content, error="m", micro=False)
    svg = qr.svg_inline(
        scale=scale,
        border=2,
        dark="#111",
        light="#fff",
        svgclass="qr",
        lineclass="qr-line",
        omitsize=True,
        title=label,
    )
    return svg.replace("<svg ", '<svg role="img" preserveAspectRatio="xMidYMid meet" ', 1)
