"""Self-contained inline SVG charts for the reports: no plotting library, no network.

Each function returns one ``<svg>`` element as a string, sized in CSS pixels, with text
escaped and a ``<title>`` on every mark so a hover shows the exact numbers.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from html import escape

FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', 'Noto Sans', 'Noto Sans CJK SC', " \
       "sans-serif\""
# Viridis anchors: perceptually uniform and readable for colour-blind readers.
_VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
ACCENT = "#3b528b"
MUTED = "#9aa0a6"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _short(label: str, limit: int = 30) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def colour(t: float) -> str:
    """Viridis colour for t in [0, 1] as ``#rrggbb``."""
    t = min(1.0, max(0.0, t)) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    f = t - i
    rgb = [round(a + (b - a) * f) for a, b in zip(_VIRIDIS[i], _VIRIDIS[i + 1])]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _ink(t: float) -> str:
    return "#111" if t > 0.55 else "#fff"


def _open(cls: str, width: int, height: int, title: str, size: int = 14,
          limit: int = 80) -> str:
    """The opening ``<svg>`` tag, an accessible title and the visible heading."""
    return (f'<svg class="{cls}" role="img" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" xmlns="http://www.w3.org/2000/svg" {FONT}>'
            f'<title>{escape(title)}</title>'
            f'<text x="0" y="{size + 4}" font-size="{size}" font-weight="600" fill="#222">'
            f'{escape(_short(title, limit))}</text>')


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick positions covering [lo, hi]: steps of 1, 2, 2.5 or 5 times a power of 10."""
    span = max(hi - lo, 1e-9)
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _domain(values: Sequence[float], scale: tuple[float, float]) -> tuple[float, float]:
    """Zoom to the data (intervals on a 1-5 axis are often 0.2 wide), clipped to the scale."""
    if not values:
        return scale
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.15, (scale[1] - scale[0]) * 0.03)
    return max(scale[0], lo - pad), min(scale[1], hi + pad)


def interval_chart(
    title: str,
    rows: Sequence[tuple[str, float | None, float | None, float | None]],
    *,
    scale: tuple[float, float],
    muted: Sequence[str] = (),
    width: int = 520,
) -> str:
    """Dot-and-interval chart: one row per label ``(label, mean, ci_low, ci_high)``.

    The x axis zooms to the intervals (within ``scale``); labels in ``muted`` are grey
    (e.g. the embedded demo model).
    """
    left, right, top, row_h = 190, 58, 34, 26
    height = top + row_h * max(len(rows), 1) + 30
    values = [v for _l, m, a, b in rows for v in (m, a, b) if v is not None]
    lo, hi = _domain(values, scale)
    plot_w = width - left - right

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo or 1.0) * plot_w

    out = [_open("chart", width, height, title)]
    axis_y = top + row_h * len(rows) + 4
    for tick in nice_ticks(lo, hi):
        tx = x(tick)
        out.append(f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{axis_y}" '
                   'stroke="#e3e6ea" stroke-width="1"/>')
        out.append(f'<text x="{tx:.1f}" y="{axis_y + 15}" font-size="11" fill="#666" '
                   f'text-anchor="middle">{tick:g}</text>')
    for i, (label, mean, low, high) in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        grey = label in muted
        ink = MUTED if grey else ACCENT
        if i % 2 == 0:
            out.append(f'<rect x="0" y="{cy - row_h / 2:.1f}" width="{width}" '
                       f'height="{row_h}" fill="#f6f7f9"/>')
        out.append(f'<text x="{left - 10}" y="{cy + 4:.1f}" font-size="12" text-anchor="end" '
                   f'fill="{"#888" if grey else "#222"}">{escape(_short(label))}'
                   f'<title>{escape(label)}</title></text>')
        tip = f"{label}: {_fmt(mean, 3)} [{_fmt(low, 3)}, {_fmt(high, 3)}]"
        if low is not None and high is not None:
            out.append(f'<line x1="{x(low):.1f}" y1="{cy:.1f}" x2="{x(high):.1f}" '
                       f'y2="{cy:.1f}" stroke="{ink}" stroke-width="3" stroke-linecap="round" '
                       f'opacity="0.45"><title>{escape(tip)}</title></line>')
        if mean is not None:
            out.append(f'<circle cx="{x(mean):.1f}" cy="{cy:.1f}" r="5.5" fill="{ink}" '
                       f'stroke="#fff" stroke-width="1.5"><title>{escape(tip)}</title></circle>')
            out.append(f'<text x="{width - 6}" y="{cy + 4:.1f}" font-size="12" '
                       f'text-anchor="end" fill="#333" class="num">{_fmt(mean)}</text>')
    out.append("</svg>")
    return "".join(out)


def heatmap(
    title: str,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    values: Sequence[Sequence[float | None]],
    *,
    scale: tuple[float, float],
    counts: Sequence[Sequence[int | None]] | None = None,
    cell_w: int = 92,
) -> str:
    """Rows x columns of coloured cells with the value printed; colours span the observed
    range (the legend shows it). Empty cells (no items) are hatched grey."""
    left, top, cell_h = 190, 52, 30
    width = left + cell_w * len(col_labels) + 10
    height = top + cell_h * len(row_labels) + 46
    seen = [v for row in values for v in row if v is not None]
    lo, hi = (min(seen), max(seen)) if seen else scale
    if hi - lo < 1e-9:
        lo, hi = scale

    def t(v: float) -> float:
        return (v - lo) / (hi - lo)

    out = [_open("chart", width, height, title)]
    for j, col in enumerate(col_labels):
        cx = left + cell_w * j + cell_w / 2
        out.append(f'<text x="{cx:.1f}" y="{top - 10}" font-size="11.5" text-anchor="middle" '
                   f'fill="#444">{escape(_short(col, 14))}<title>{escape(col)}</title></text>')
    for i, row in enumerate(row_labels):
        cy = top + cell_h * i
        out.append(f'<text x="{left - 10}" y="{cy + cell_h / 2 + 4:.1f}" font-size="12" '
                   f'text-anchor="end" fill="#222">{escape(_short(row))}'
                   f'<title>{escape(row)}</title></text>')
        for j, col in enumerate(col_labels):
            v = values[i][j]
            x0 = left + cell_w * j
            n = counts[i][j] if counts is not None else None
            tip = f"{row} · {col}: {_fmt(v, 3)}" + (f" (n={n})" if n is not None else "")
            if v is None:
                out.append(f'<rect x="{x0 + 1}" y="{cy + 1}" width="{cell_w - 2}" '
                           f'height="{cell_h - 2}" fill="#eceef1"><title>{escape(tip)}</title>'
                           '</rect>')
                continue
            out.append(f'<rect x="{x0 + 1}" y="{cy + 1}" width="{cell_w - 2}" '
                       f'height="{cell_h - 2}" rx="3" fill="{colour(t(v))}">'
                       f'<title>{escape(tip)}</title></rect>')
            out.append(f'<text x="{x0 + cell_w / 2:.1f}" y="{cy + cell_h / 2 + 4:.1f}" '
                       f'font-size="12" text-anchor="middle" fill="{_ink(t(v))}" '
                       f'class="num">{_fmt(v)}</text>')
    out.append(_legend(left, top + cell_h * len(row_labels) + 14, lo, hi))
    out.append("</svg>")
    return "".join(out)


def _legend(x0: float, y0: float, lo: float, hi: float, width: int = 180) -> str:
    stops = "".join(f'<stop offset="{k / 8:.3f}" stop-color="{colour(k / 8)}"/>'
                    for k in range(9))
    gid = f"legend{zlib.crc32(repr((x0, y0, lo, hi)).encode()):08x}"
    return (f'<defs><linearGradient id="{gid}">{stops}</linearGradient></defs>'
            f'<rect x="{x0}" y="{y0}" width="{width}" height="10" rx="2" fill="url(#{gid})"/>'
            f'<text x="{x0 - 6}" y="{y0 + 9}" font-size="11" text-anchor="end" fill="#666">'
            f'{lo:.2f}</text><text x="{x0 + width + 6}" y="{y0 + 9}" font-size="11" '
            f'fill="#666">{hi:.2f}</text>')


def histogram(title: str, counts: dict[str, int], *, flag: bool = False,
              width: int = 220, height: int = 120) -> str:
    """Small bar chart of a judge's score counts; red bars when the judge is flat."""
    labels = list(counts)
    total = sum(counts.values()) or 1
    top, bottom = 26, 20
    bar_w = (width - 10) / max(len(labels), 1)
    peak = max(counts.values()) or 1
    fill = "#c0392b" if flag else ACCENT
    out = [_open("hist", width, height, title, size=12, limit=34)]
    for k, label in enumerate(labels):
        c = counts[label]
        h = (height - top - bottom) * c / peak
        x0 = 5 + k * bar_w
        out.append(f'<rect x="{x0 + 2:.1f}" y="{height - bottom - h:.1f}" '
                   f'width="{bar_w - 4:.1f}" height="{h:.1f}" fill="{fill}" rx="2">'
                   f'<title>score {escape(label)}: {c} ({c / total:.0%})</title></rect>')
        out.append(f'<text x="{x0 + bar_w / 2:.1f}" y="{height - 6}" font-size="10.5" '
                   f'text-anchor="middle" fill="#666">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)
