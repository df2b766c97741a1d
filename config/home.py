"""The home page: what each role can do next, read through each app's selectors."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.roles import is_admin, is_trainer
from labeling.conversations.selectors import conversation_counts_for_user
from ranking.rank.selectors import ranking_queue_summary
from sampler.registry.selectors import model_version_active


def home(request: HttpRequest) -> HttpResponse:
    context = {
        "conversation_counts": conversation_counts_for_user(user=request.user)
        if is_trainer(request.user)
        else None,
        "ranking_summary": ranking_queue_summary(),
        "active_policy": model_version_active(),
        "show_admin": is_admin(request.user),
    }
    return render(request, "home.html", context)
