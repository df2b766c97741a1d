"""The Models page for admins: the version tree, PPO launches, head-to-head comparisons.

Promotion goes through the existing promote view (``sampler:version-promote``), which sends the
admin back here.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.roles import staff_required
from config.forms import add_validation_errors
from config.htmx import HtmxHttpRequest, redirect_page
from ranking.exports.filters import ExportFilters
from ranking.quality.selectors import human_preference_between_versions
from sampler.comparisons.forms import ComparisonForm
from sampler.comparisons.selectors import (
    judgements_against_parents,
    model_comparison_list,
    version_ratings,
    vote_tallies,
)
from sampler.comparisons.services import model_comparison_create
from sampler.jobs.selectors import jobs_progress
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active, model_version_tree
from sampler.registry.services import model_version_promote
from sampler.runs.forms import PPORunForm
from sampler.runs.services import training_run_create

# The PPO form shares field names with the comparison form on the same page: distinct ids.
PPO_IDS = "ppo_%s"

PAGE = "sampler/models.html"


def _comparisons() -> dict:
    comparisons = list(model_comparison_list())
    tallies = vote_tallies()
    rows = [
        {
            "comparison": comparison,
            "human": human_preference_between_versions(
                version_a_id=comparison.version_a_id, version_b_id=comparison.version_b_id
            ),
            "votes": tallies.get((comparison.version_a_id, comparison.version_b_id)),
        }
        for comparison in comparisons
    ]
    return {
        "comparisons": rows,
        # The table polls while one may change by itself; queued ones waiting for no worker
        # stop it, and it says so.
        "comparisons_progress": jobs_progress(jobs=comparisons),
    }


def _page(
    request: HttpRequest,
    *,
    ppo_form: PPORunForm | None = None,
    comparison_form: ComparisonForm | None = None,
    status: int = 200,
) -> HttpResponse:
    rows = model_version_tree()
    # Promotion shows both judges of each version against its parent.
    verdicts = judgements_against_parents(versions=[row.version for row in rows])
    for row in rows:
        verdict = verdicts.get(row.version.pk)
        if verdict is not None:
            row.judge_win_rate, row.judge_name, row.votes = verdict
    context = {
        "rows": rows,
        "ratings": version_ratings(),
        "active_policy": model_version_active(),
        "active_reward": model_version_active(kind="reward"),
        "ppo_form": ppo_form or PPORunForm(auto_id=PPO_IDS),
        "comparison_form": comparison_form or ComparisonForm(),
        **_comparisons(),
    }
    return render(request, PAGE, context, status=status)


@staff_required
def models(request: HttpRequest) -> HttpResponse:
    return _page(request)


@staff_required
def comparisons(request: HtmxHttpRequest) -> HttpResponse:
    """The comparisons table alone: what the page polls while one may change by itself, and
    what its "Check again" button asks for. Opened by itself (a bookmark, a typed address),
    the whole Models page."""
    if not request.htmx:
        return _page(request)
    return render(request, f"{PAGE}#comparison-table", _comparisons())


@staff_required
@require_POST
def ppo_run_start(request: HttpRequest) -> HttpResponse:
    form = PPORunForm(request.POST, auto_id=PPO_IDS)
    if not form.is_valid():
        return _page(request, ppo_form=form, status=422)
    data = form.cleaned_data
    try:
        run = training_run_create(
            kind="ppo",
            config=form.config(),
            base_version=data["base_version"],
            reward_version=data["reward_version"],
            filters=ExportFilters(test_fraction=data["test_fraction"]),
            output_name=data["output_name"],
            started_by=request.user,
        )
    except ValidationError as error:
        add_validation_errors(form, error)
        return _page(request, ppo_form=form, status=422)
    # The run page says it is queued (or not sent yet), in the part it polls: gone once it runs.
    url = reverse("sampler:training-run", kwargs={"run_id": run.pk})
    return redirect_page(request, url)


@staff_required
@require_POST
def comparison_start(request: HttpRequest) -> HttpResponse:
    form = ComparisonForm(request.POST)
    if not form.is_valid():
        return _page(request, comparison_form=form, status=422)
    data = form.cleaned_data
    try:
        model_comparison_create(
            version_a=data["version_a"],
            version_b=data["version_b"],
            reward_version=data["reward_version"],
            extra_judges=list(data["extra_judges"]),
            prompts=data["prompts"],
            max_new_tokens=data["max_new_tokens"],
            test_fraction=data["test_fraction"],
            split_seed=data["split_seed"],
            requested_by=request.user,
            project=data["project"],
        )
    except ValidationError as error:
        add_validation_errors(form, error)
        return _page(request, comparison_form=form, status=422)
    # The comparisons table says it is queued (or not sent yet), in the part it polls: gone
    # once it runs.
    url = reverse("sampler:models") + "#comparisons"
    return redirect_page(request, url)


@staff_required
@require_POST
def version_promote(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion, pk=version_id)
    try:
        model_version_promote(version=version)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"{version.name} is now the active {version.get_kind_display()}.")
    url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        url = reverse("sampler:training")
    return redirect_page(request, url)
