"""Ranking pages. Each view: validate -> one service/selector -> render."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import trainer_required
from config.htmx import HtmxHttpRequest, validation_messages
from ranking.projects.models import Project
from ranking.projects.selectors import CHOSEN_PROJECT_SESSION_KEY, project_for_trainer
from ranking.rank import services
from ranking.rank.forms import FLAG_LABELS, RankingForm
from ranking.rank.models import Assignment
from ranking.rank.selectors import (
    AssignmentScreen,
    assignment_get_for_trainer,
    assignment_screen,
    ranking_queue_summary,
)

RANK = "ranking/rank/rank.html"
# Turns of the conversation shown open above the replies; older ones fold into <details>.
RECENT_TURNS = 4


def _render_card(
    request: HtmxHttpRequest,
    assignment: Assignment | None,
    *,
    screen: AssignmentScreen | None = None,
    form: RankingForm | None = None,
    errors: list[str] | None = None,
    conflict: str = "",
    status: int = 200,
) -> HttpResponse:
    """The page, or only its ``ranking-card`` partial for htmx: a task, or the waiting state."""
    context: dict = {"assignment": assignment, "errors": errors or [], "conflict": conflict}
    if assignment is None:
        context["summary"] = ranking_queue_summary()
    else:
        screen = screen or assignment_screen(assignment=assignment)
        form = form or RankingForm(candidates=screen.candidates)
        split = max(0, len(screen.prefix) - RECENT_TURNS)
        context |= {
            "form": form,
            "rows": form.rows(),
            "earlier_turns": screen.prefix[:split],
            "recent_turns": screen.prefix[split:],
            "flag_labels": FLAG_LABELS.items(),
            "candidate_count": len(screen.candidates),
        }
    template = f"{RANK}#ranking-card" if request.htmx else RANK
    return render(request, template, context, status=status)


def _chosen_project(request: HtmxHttpRequest) -> Project | None:
    """The project the trainer chose on the Projects page (None: all of theirs)."""
    slug = request.session.get(CHOSEN_PROJECT_SESSION_KEY)
    return project_for_trainer(trainer=request.user, slug=slug) if slug else None


def _next_task(request: HtmxHttpRequest) -> HttpResponse:
    if not request.htmx:
        return redirect("ranking:rank")
    return _render_card(
        request, services.task_claim_next(trainer=request.user, project=_chosen_project(request))
    )


@trainer_required
@require_GET
def rank(request: HtmxHttpRequest) -> HttpResponse:
    """The trainer's current task (a lease is resumed, or the next task leased)."""
    return _render_card(
        request, services.task_claim_next(trainer=request.user, project=_chosen_project(request))
    )


@trainer_required
@require_POST
def submit(request: HtmxHttpRequest, assignment_id: int) -> HttpResponse:
    assignment = assignment_get_for_trainer(assignment_id=assignment_id, trainer=request.user)
    screen = assignment_screen(assignment=assignment)
    form = RankingForm(request.POST, candidates=screen.candidates)
    if not form.is_valid():
        errors = form.error_messages()
        return _render_card(
            request, assignment, screen=screen, form=form, errors=errors, status=422
        )
    try:
        services.ranking_submit(
            assignment=assignment, trainer=request.user, ranking=form.ranking_input()
        )
    except services.RankingConflict as conflict:
        # Nothing was stored; the trainer's answer stays on screen next to the reason.
        return _render_card(
            request, assignment, screen=screen, form=form, conflict=str(conflict), status=409
        )
    except ValidationError as error:
        errors = validation_messages(error)
        return _render_card(
            request, assignment, screen=screen, form=form, errors=errors, status=422
        )
    messages.success(request, "Ranking saved.")
    return _next_task(request)


@trainer_required
@require_POST
def skip(request: HtmxHttpRequest, assignment_id: int) -> HttpResponse:
    assignment = assignment_get_for_trainer(assignment_id=assignment_id, trainer=request.user)
    try:
        services.assignment_skip(
            assignment=assignment,
            trainer=request.user,
            reason=request.POST.get("skip_reason", ""),
        )
    except ValidationError as error:
        screen = assignment_screen(assignment=assignment)
        form = RankingForm(request.POST, candidates=screen.candidates)
        errors = validation_messages(error)
        return _render_card(
            request, assignment, screen=screen, form=form, errors=errors, status=422
        )
    messages.info(request, "Task skipped: it will not be offered to you again.")
    return _next_task(request)
