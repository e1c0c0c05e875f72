"""The benchmarks' shared results: each bench records its ratios in docs/benchmarks.json, and the
chart of all of them (docs/benchmarks.svg, shown in the README) is drawn again from that file.

Plain SVG written by hand: one row per job, case and PostgreSQL server, a bar for the measured
ratio, a line at the target, green when the target is met, and a dashed line at the machine's
floor where a bench measures one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
RESULTS = DOCS / "benchmarks.json"
CHART = DOCS / "benchmarks.svg"


@dataclass(frozen=True)
class Result:
    job: str  # "export", "stock", "reminders"
    case: str  # e.g. "one store, one month (1 M invoices)"
    server: str  # e.g. "PostgreSQL 15 (Debian)"
    ratio: float  # job / raw (lower is better), or raw share reached (higher is better)
    target: float
    higher_is_better: bool
    detail: str  # the figures behind the ratio, one line
    measured_at: str = ""
    # The lowest ratio this machine allows any job of the kind (export: the raw steps run at once),
    # drawn as a dashed line where it is known.
    floor: float | None = None

    @property
    def met(self) -> bool:
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target


def load() -> list[Result]:
    if not RESULTS.exists():
        return []
    return [Result(**item) for item in json.loads(RESULTS.read_text(encoding="utf-8"))]


def record(*results: Result) -> None:
    """Replace the rows of the same job, case and server, keep the others, draw the chart again."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    fresh = [Result(**{**asdict(result), "measured_at": now}) for result in results]
    keys = {(result.job, result.case, result.server) for result in fresh}
    kept = [result for result in load() if (result.job, result.case, result.server) not in keys]
    every = sorted([*kept, *fresh], key=lambda result: (result.job, result.case, result.server))
    DOCS.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps([asdict(result) for result in every], indent=2) + "\n", encoding="utf-8")
    CHART.write_text(svg(every), encoding="utf-8")


ROW, LABEL, BAR, PAD = 40, 460, 360, 12


def svg(results: list[Result]) -> str:
    scale_max = max([3.0, *(max(result.ratio, result.target) * 1.1 for result in results)])
    width, height = LABEL + BAR + 150, 60 + ROW * len(results) + 40

    def x(value: float) -> float:
        return LABEL + BAR * min(value, scale_max) / scale_max

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{PAD}" y="22" font-size="15" font-weight="bold">'
        "Each job against its raw baseline (bar: measured ratio, black line: target, "
        "dashed: the fastest this machine allows)</text>",
        f'<text x="{PAD}" y="40" fill="#555">export and stock: job time / raw time, lower is better; '
        "reminders: job rate / raw SMTP rate, higher is better</text>",
    ]
    for tick in range(int(scale_max) + 1):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="50" x2="{x(tick):.1f}" y2="{height - 30}" stroke="#ddd"/>'
            f'<text x="{x(tick):.1f}" y="{height - 14}" text-anchor="middle" fill="#555">{tick}x</text>'
        )
    for index, result in enumerate(results):
        top = 56 + ROW * index
        colour = "#2e7d32" if result.met else "#c62828"
        wanted = ("≥ " if result.higher_is_better else "≤ ") + f"{result.target:g}x"
        parts.append(
            f'<text x="{PAD}" y="{top + 13}" font-size="11">{escape(f"{result.job}: {result.case}")}</text>'
            f'<text x="{PAD}" y="{top + 27}" font-size="10" fill="#555">{escape(result.server)}</text>'
            f'<rect x="{LABEL}" y="{top + 4}" width="{x(result.ratio) - LABEL:.1f}" height="18" '
            f'fill="{colour}"><title>{escape(result.detail)} ({escape(result.measured_at)})</title></rect>'
            f'<line x1="{x(result.target):.1f}" y1="{top}" x2="{x(result.target):.1f}" y2="{top + 26}" '
            f'stroke="black" stroke-width="2"/>'
            f'<text x="{LABEL + BAR + 8}" y="{top + 17}">{result.ratio:.2f}x (target {wanted})</text>'
        )
        if result.floor is not None:
            parts.append(
                f'<line x1="{x(result.floor):.1f}" y1="{top}" x2="{x(result.floor):.1f}" y2="{top + 26}" '
                f'stroke="#555" stroke-width="2" stroke-dasharray="3,2"><title>floor {result.floor:.2f}x'
                "</title></line>"
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
