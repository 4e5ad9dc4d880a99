"""The run's loss curve as a small SVG (``loss.svg``), written without a plotting library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

WIDTH, HEIGHT, PAD = 640, 360, 40
COLOURS = (("train", "#2563eb"), ("val", "#dc2626"))


def loss_plot(entries: list[dict[str, Any]], target: Path) -> None:
    """Train and val loss against steps; nothing is written when the log is empty."""
    w, h, pad = WIDTH, HEIGHT, PAD
    pts = [(e["step"], e["loss"], e["split"]) for e in entries]
    if not pts:
        return
    max_step = max(p[0] for p in pts) or 1
    lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
    hi = hi if hi > lo else lo + 1

    def xy(step: float, loss: float) -> str:
        return f"{pad + (w - 2 * pad) * step / max_step:.1f},{h - pad - (h - 2 * pad) * (loss - lo) / (hi - lo):.1f}"

    lines = []
    for name, colour in COLOURS:
        seq = " ".join(xy(s, v) for s, v, sp in pts if sp == name)
        if seq:
            lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{seq}"/>')
    target.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">'
        f'<rect width="100%" height="100%" fill="white"/>{"".join(lines)}'
        f'<text x="{pad}" y="20">loss: train (blue), val (red); {lo:.3f}–{hi:.3f} over {max_step} steps</text>'
        "</svg>\n",
        encoding="utf-8",
    )
