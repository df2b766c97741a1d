"""The curves of a run page. PPO runs put reward, KL and reply length first, side by side:
reward hacking shows as a rising reward with a KL or a length running away."""

from __future__ import annotations

from django.utils.safestring import SafeString

from sampler.models import TrainingRun
from sampler.plots import line_chart, metric_charts

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
