"""Line charts of training curves: the server prepares each chart's data (finite points,
downsampled) and static/js/charts.js draws it with Chart.js from npm.

Every piece of text that reaches the page (titles, metric names) is escaped here, the data
through ``json_script``; the result is safe to insert into a template as is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape

from django.utils.html import json_script
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import slugify

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


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.4g}"


def line_chart(series: dict[str, Iterable], *, title: str, box: Box | None = None) -> SafeString:
    """A chart of ``{name: [[x, y], ...]}``: a ``<canvas>`` that static/js/charts.js draws with
    Chart.js (npm ``chart.js``), its data in a ``<script type="application/json">`` (never
    executed: the page needs no inline script), and the latest value of each curve as text
    (what a screen reader or a page without JavaScript gets). ``box`` sets the aspect ratio."""
    box = box or Box()
    curves = {
        name: downsample(points) for name, raw in series.items() if (points := _finite_points(raw))
    }
    data_id = f"chart-data-{slugify(title) or 'untitled'}"
    summary = (
        "; ".join(
            f"{escape(name)}: {escape(_label(y))} at step {escape(_label(x))}"
            for name, (x, y) in sorted((name, points[-1]) for name, points in curves.items())
        )
        or "no data yet"
    )
    payload = {
        "title": title,
        "series": {name: [[x, y] for x, y in points] for name, points in sorted(curves.items())},
        "colors": list(PALETTE),
    }
    return mark_safe(  # every text in it was escaped; the JSON by json_script
        f'<canvas class="chart" data-chart="line" data-source="{data_id}" '
        f'width="{box.width}" height="{box.height}" role="img" '
        f'aria-label="{escape(title)}: {summary}"></canvas>'
        f"{json_script(payload, data_id)}"
        f'<figcaption class="chart-caption"><strong>{escape(title)}</strong> '
        f'<span class="muted">{summary}</span></figcaption>'
    )


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
    # raw_scores (the reward model's, as eval/scores is) beside scores (after the EOS penalty).
    (
        "Reward",
        ("objective/rlhf_reward", "objective/scores", "objective/raw_scores", "eval/scores"),
    ),
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
