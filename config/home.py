"""The home page: what each role can do next and their dashboards, read through each app's
selectors (the admin's numbers through the same selectors as /metrics)."""

from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.roles import is_admin, is_trainer
from config.metrics import generation_duration_by_purpose, suggestion_latency
from labeling.conversations.selectors import conversation_counts_for_user, conversation_list
from ranking.quality.selectors import rankings_per_day, rankings_per_trainer, trainer_dashboard
from ranking.rank.selectors import (
    ranking_pool_count,
    ranking_pool_target,
    ranking_summary_for_trainer,
)
from sampler.jobs.selectors import queue_depths
from sampler.registry.selectors import model_version_active
from sampler.workers.selectors import workers_live_by_queue


def _mean_seconds(distribution) -> float | None:
    return distribution.total_seconds / distribution.count if distribution.count else None


def _admin_dashboard() -> dict:
    pool = ranking_pool_count()
    live = workers_live_by_queue()
    waiting = queue_depths()
    generation = generation_duration_by_purpose()
    return {
        "pool": pool,
        "pool_target": ranking_pool_target(),
        "queues": [
            {"name": name, "waiting": waiting.get(name, 0), "workers": workers}
            for name, workers in live.items()
        ],
        "suggestion_wait": _mean_seconds(suggestion_latency()),
        "ranking_sampling": _mean_seconds(generation["ranking"])
        if "ranking" in generation
        else None,
        "per_day": rankings_per_day(days=14),
        "per_trainer": rankings_per_trainer(since=timezone.now() - timedelta(days=7)),
    }


def home(request: HttpRequest) -> HttpResponse:
    trainer = is_trainer(request.user)
    admin = is_admin(request.user)
    context = {
        "conversation_counts": conversation_counts_for_user(user=request.user) if trainer else None,
        "recent_conversations": list(
            conversation_list(user=request.user).filter(owner=request.user)[:5]
        )
        if trainer
        else [],
        "trainer_dashboard": trainer_dashboard(trainer=request.user) if trainer else None,
        # What the trainer can be given (their projects, not gold copies); for anyone else the
        # active projects' pools.
        "ranking_summary": ranking_summary_for_trainer(trainer=request.user)
        if trainer
        else ranking_pool_count(),
        "active_policy": model_version_active(),
        "show_admin": admin,
        "admin_dashboard": _admin_dashboard() if admin else None,
    }
    return render(request, "home.html", context)
