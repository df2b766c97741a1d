"""Line charts of training curves as inline SVG, rendered on the server (no JS library).

Every piece of text that reaches the SVG (titles, metric names) is escaped here; the result is
safe to insert into a template as is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from html import escape

from django.utils.safestring import SafeString, mark_safe

from sampler.runs.models import TrainingRun

# Enough points for a 500-pixel-wide chart; more only slows the page.
MAX_POINTS = 500
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2")


@dataclass(frozen=True)
class Box:
    width: int = 520
    height: int = 220
    left: int = 56
    right: int = 12
    top: int = 28
    bottom: int = 30

    @property
    def inner_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def inner_height(self) -> int:
        return self.height - self.top - self.bottom


def _finite_points(points: Iterable) -> list[tuple[float, float]]:
    clean = []
    for point in points:
        try:
            x, y = float(point[0]), float(point[1])
        except (TypeError, ValueError, IndexError):
            continue
        if math.isfinite(x) and math.isfinite(y):
            clean.append((x, y))
    return clean


def downsample(points: list[tuple[float, float]], limit: int = MAX_POINTS):
    """Every n-th point, always keeping the last one (the newest value)."""
    if len(points) <= limit:
        return points
    stride = math.ceil(len(points) / limit)
    kept = points[::stride]
    return kept if kept[-1] == points[-1] else [*kept, points[-1]]


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.4g}"


def _tick_text(x: str, y: str, anchor: str, value: float) -> str:
    return (
        f'<text class="chart-tick" x="{x}" y="{y}" '
        f'text-anchor="{anchor}">{escape(_label(value))}</text>'
    )


def line_chart(series: dict[str, Iterable], *, title: str, box: Box | None = None) -> SafeString:
    """An SVG chart of ``{name: [[x, y], ...]}``; an empty-state box when there is no data."""
    box = box or Box()
    curves = {
        name: downsample(points) for name, raw in series.items() if (points := _finite_points(raw))
    }
    parts = [
        f'<svg class="chart" viewBox="0 0 {box.width} {box.height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="{box.left}" y="16">{escape(title)}</text>',
    ]
    if not curves:
        parts.append(
            f'<text class="chart-empty" x="{box.width / 2}" y="{box.height / 2}" '
            'text-anchor="middle">no data yet</text></svg>'
        )
        return mark_safe("".join(parts))  # every text in it was escaped

    # Room above the plot for one legend line per curve.
    box = replace(box, top=max(box.top, 20 + 13 * len(curves)))
    xs = [x for points in curves.values() for x, _ in points]
    ys = [y for points in curves.values() for _, y in points]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    if x_high == x_low:
        x_high = x_low + 1
    if y_high == y_low:
        half_span = abs(y_low) * 0.1 or 0.5
        y_low, y_high = y_low - half_span, y_high + half_span
    padding = (y_high - y_low) * 0.05
    y_low, y_high = y_low - padding, y_high + padding

    def px(x: float) -> float:
        return box.left + (x - x_low) / (x_high - x_low) * box.inner_width

    def py(y: float) -> float:
        return box.top + (y_high - y) / (y_high - y_low) * box.inner_height

    bottom = box.top + box.inner_height
    parts.append(
        f'<path class="chart-axis" '
        f'd="M{box.left},{box.top}V{bottom}H{box.left + box.inner_width}"/>'
    )
    for tick in nice_ticks(y_low, y_high):
        y = py(tick)
        parts.append(
            f'<path class="chart-grid" d="M{box.left},{y:.1f}H{box.left + box.inner_width}"/>'
            + _tick_text(f"{box.left - 6}", f"{y + 4:.1f}", "end", tick)
        )
    for tick in nice_ticks(x_low, x_high):
        parts.append(_tick_text(f"{px(tick):.1f}", f"{bottom + 16}", "middle", tick))
    legend_x = box.left + box.inner_width
    for index, (name, points) in enumerate(sorted(curves.items())):
        color = PALETTE[index % len(PALETTE)]
        coordinates = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(
            f'<polyline class="chart-line" fill="none" stroke="{color}" stroke-width="1.6" '
            f'points="{coordinates}"><title>{escape(name)}</title></polyline>'
        )
        if len(points) == 1:
            x, y = points[0]
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}"/>')
        parts.append(
            f'<text class="chart-legend" x="{legend_x}" y="{14 + 13 * index}" '
            f'text-anchor="end" fill="{color}">'
            f"{escape(name)} {escape(_label(points[-1][1]))}</text>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text in it was escaped


def metric_charts(history: dict[str, list]) -> list[SafeString]:
    """One chart per metric family (``loss/*``, ``accuracy/*``, ``reward/*``, ...), in a fixed
    order: loss first, learning rate last."""
    families: dict[str, dict[str, list]] = {}
    for name, points in (history or {}).items():
        families.setdefault(name.split("/")[0], {})[name] = points
    order = {"loss": 0, "accuracy": 1, "reward": 2, "learning_rate": 9}
    titles = {
        "loss": "Loss",
        "accuracy": "Pairwise / token accuracy",
        "learning_rate": "Learning rate",
    }
    return [
        line_chart(families[family], title=titles.get(family, family.replace("_", " ").title()))
        for family in sorted(families, key=lambda family: (order.get(family, 5), family))
    ]


# ---- the curves of a run page --------------------------------------------------------------
# PPO runs put reward, KL and reply length first, side by side: reward hacking shows as a
# rising reward with a KL or a length running away.

# (title, metric names) in page order; the first three are the guard-rail row.
PPO_CHARTS = (
    ("Reward", ("objective/rlhf_reward", "objective/scores", "eval/scores")),
    ("KL to the reference (nats per reply)", ("objective/kl", "eval/kl")),
    ("Reply length (tokens)", ("response/length", "eval/length")),
    ("End-of-turn rate", ("response/eos_rate", "eval/eos_rate")),
    ("Losses", ("loss/policy", "loss/value")),
    ("Policy", ("policy/entropy", "policy/clipfrac", "policy/approxkl")),
    ("KL coefficient", ("objective/kl_coef",)),
)


def ppo_charts(history: dict[str, list], *, max_kl: float | None = None) -> list[SafeString]:
    charts = []
    for title, names in PPO_CHARTS:
        series = {name: history[name] for name in names if history.get(name)}
        if title.startswith("KL to") and max_kl and series:
            steps = [point[0] for points in series.values() for point in points]
            series["max_kl (early stop)"] = [[min(steps), max_kl], [max(steps), max_kl]]
        charts.append(line_chart(series, title=title))
    return charts


def run_charts(run: TrainingRun) -> list[SafeString]:
    if run.kind == TrainingRun.Kind.PPO:
        return ppo_charts(run.metrics or {}, max_kl=(run.config or {}).get("max_kl"))
    return metric_charts(run.metrics)
