"""Ranking pages. Each view: validate -> one service/selector -> render."""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import trainer_required
from config.htmx import HtmxHttpRequest, validation_messages
from ranking.projects.models import Project
from ranking.projects.selectors import (
    CHOSEN_PROJECT_SESSION_KEY,
    project_chosen_closed,
    project_for_trainer,
)
from ranking.rank import services
from ranking.rank.forms import FLAG_LABELS, VERDICTS, RankingForm
from ranking.rank.models import Assignment
from ranking.rank.selectors import (
    AssignmentScreen,
    RemovedByUndo,
    assignment_current,
    assignment_get_for_trainer,
    assignment_screen,
    ranking_as_form_data,
    ranking_get_for_trainer,
    ranking_undo_open_until,
    ranking_waiting_state,
)

RANK = "ranking/rank/rank.html"
# Turns of the conversation shown open above the replies (the last exchange); older ones fold
# into <details>, so the replies start high on the screen.
RECENT_TURNS = 2
# Without JavaScript an undo redirects to the Rank page (post/redirect/get, so a reload does not
# post it again); the answer taken back crosses the redirect in the session, under its
# assignment, and the page's GET takes it once.
TAKEN_BACK_SESSION_KEY = "ranking_taken_back"
# Likewise a ranking a plain form saved: the Rank page it redirects to says so, with the toast's
# Undo as a form of its own while the undo window lasts.
SAVED_SESSION_KEY = "ranking_saved"


def _render_card(
    request: HtmxHttpRequest,
    assignment: Assignment | None,
    *,
    screen: AssignmentScreen | None = None,
    form: RankingForm | None = None,
    errors: list[str] | None = None,
    conflict: str = "",
    status: int = 200,
    claimed: bool = True,
    toast: dict | None = None,
    chosen_closed: str = "",
    saved: dict | None = None,
    gone: str = "",
) -> HttpResponse:
    """The page, or only its ``ranking-card`` partial for htmx: a task, the waiting state,
    (``claimed=False``) the start state that claims a task by POST, (``chosen_closed``, the
    chosen project's name) the notice that the project chosen is closed, or (``gone``, why)
    the notice that the task posted to is no longer the trainer's. ``saved``: the ranking a
    plain form saved, above the card (see ``_saved_take``)."""
    context: dict = {
        "assignment": assignment,
        "errors": errors or [],
        "conflict": conflict,
        "claimed": claimed,
        "chosen_closed": chosen_closed,
        "saved": saved,
        "gone": gone,
    }
    if assignment is None and not chosen_closed and not gone:
        chosen = _chosen_project(request)
        context["waiting"] = ranking_waiting_state(trainer=request.user, project=chosen)
        # A task of another project still leased to the trainer waits there.
        context["held_elsewhere"] = (
            assignment_current(trainer=request.user) if chosen is not None else None
        )
    elif assignment is not None:
        screen = screen or assignment_screen(assignment=assignment)
        form = form or RankingForm(candidates=screen.candidates)
        split = max(0, len(screen.prefix) - RECENT_TURNS)
        context |= {
            "guideline_project": assignment.task.project,
            "form": form,
            "rows": form.rows(),
            "rationale_typed": form.typed("rationale"),
            "skip_reason_typed": form.typed("skip_reason"),
            "earlier_turns": screen.prefix[:split],
            "recent_turns": screen.prefix[split:],
            "flag_labels": FLAG_LABELS.items(),
            "verdict_choices": VERDICTS,
            "candidate_count": len(screen.candidates),
            "replies_waiting_for_filter": screen.replies_waiting_for_filter,
        }
    template = f"{RANK}#ranking-card" if request.htmx else RANK
    response = render(request, template, context, status=status)
    if toast is not None and request.htmx:
        # Out of band: the toast region of the page, outside the card that is replaced.
        response.write(render_to_string(f"{RANK}#toast", toast, request=request))
    return response


def _saved_take(request: HtmxHttpRequest) -> dict | None:
    """The ranking a plain form saved before the redirect, once: its id and until when it may
    be taken back (None once the window is over: no Undo is shown then)."""
    ranking_id = request.session.pop(SAVED_SESSION_KEY, None)
    if ranking_id is None:
        return None
    return {
        "ranking_id": ranking_id,
        "undo_until": ranking_undo_open_until(ranking_id=ranking_id, trainer=request.user),
    }


def _answer_form(*, answer: dict[str, object], screen: AssignmentScreen) -> RankingForm:
    """The ranking form filled in with an answer as the form posts it (one taken back)."""
    data = QueryDict(mutable=True)
    for key, value in answer.items():
        data.setlist(key, value if isinstance(value, list) else [value])
    return RankingForm(data, candidates=screen.candidates)


def _taken_back_form(
    taken_back: dict | None, assignment: Assignment | None
) -> tuple[AssignmentScreen | None, RankingForm | None]:
    """The answer a no-JS undo took back, as the screen and form of ``assignment`` (None, None
    when it was taken back on another one, or there is none)."""
    if assignment is None or not taken_back or taken_back["assignment_id"] != assignment.pk:
        return None, None
    screen = assignment_screen(assignment=assignment)
    return screen, _answer_form(answer=taken_back["answer"], screen=screen)


def _chosen_project(request: HtmxHttpRequest) -> Project | None:
    """The project the trainer chose on the Projects page (None: all of theirs)."""
    slug = request.session.get(CHOSEN_PROJECT_SESSION_KEY)
    return project_for_trainer(trainer=request.user, slug=slug) if slug else None


def _chosen_closed(request: HtmxHttpRequest) -> str:
    """The name of the project the trainer chose when it is closed to them since (paused,
    done, or no longer open to their groups): they rank nowhere until they choose again,
    rather than in all their projects, which they did not choose."""
    return project_chosen_closed(
        trainer=request.user, slug=request.session.get(CHOSEN_PROJECT_SESSION_KEY, "")
    )


def _next_task(request: HtmxHttpRequest, *, toast: dict | None = None) -> HttpResponse:
    if closed := _chosen_closed(request):
        if not request.htmx:
            return redirect("ranking:rank")
        return _render_card(request, None, toast=toast, chosen_closed=closed)
    assignment = services.task_claim_next(trainer=request.user, project=_chosen_project(request))
    if not request.htmx:
        # Without JavaScript: the page shows the lease, or says it is waiting (not "Start").
        url = reverse("ranking:rank")
        return redirect(url if assignment is not None else f"{url}?waiting=1")
    return _render_card(request, assignment, toast=toast)


@trainer_required
@require_GET
def rank(request: HtmxHttpRequest) -> HttpResponse:
    """The trainer's running lease, or the start state (a GET never claims: the page asks for
    a task with a POST, by itself through htmx or by its "Start ranking" button)."""
    # Taken whatever the page then shows: each is shown once, or not at all.
    taken_back = request.session.pop(TAKEN_BACK_SESSION_KEY, None)
    saved = _saved_take(request)
    if closed := _chosen_closed(request):
        return _render_card(request, None, chosen_closed=closed, saved=saved)
    assignment = assignment_current(trainer=request.user, project=_chosen_project(request))
    waiting = assignment is not None or "waiting" in request.GET
    screen, form = _taken_back_form(taken_back, assignment)
    return _render_card(request, assignment, screen=screen, form=form, claimed=waiting, saved=saved)


@trainer_required
@require_POST
def claim(request: HtmxHttpRequest) -> HttpResponse:
    """Lease the next task (or resume the running lease); the waiting state when none."""
    return _next_task(request)


@trainer_required
@require_POST
def submit(request: HtmxHttpRequest, assignment_id: int) -> HttpResponse:
    try:
        assignment = assignment_get_for_trainer(assignment_id=assignment_id, trainer=request.user)
    except RemovedByUndo as gone:
        # Given back by an undo: no task left to show the answer on, only why and what next.
        return _render_card(request, None, gone=str(gone), status=409)
    screen = assignment_screen(assignment=assignment)
    form = RankingForm(request.POST, candidates=screen.candidates)
    try:
        if not form.is_valid():
            # The claim first: a stale tab hears that its claim is gone, not what to fix.
            services.ranking_submit_check(assignment=assignment, trainer=request.user)
            errors = form.error_messages()
            return _render_card(
                request, assignment, screen=screen, form=form, errors=errors, status=422
            )
        stored = services.ranking_submit_shown(
            assignment=assignment, trainer=request.user, ranking=form.ranking_input()
        )
    except services.LeaseGivenBack as gone:
        # Given back by an undo after the read above: as when it was gone before it.
        return _render_card(request, None, gone=str(gone), status=409)
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
    if not request.htmx:
        request.session[SAVED_SESSION_KEY] = stored.pk
        return _next_task(request)
    # The toast confirms and offers to take the ranking back for RANKING_UNDO_SECONDS.
    return _next_task(
        request,
        toast={
            "text": "Ranking saved.",
            "undo_ranking_id": stored.pk,
            "seconds": settings.RANKING_UNDO_SECONDS,
        },
    )


@trainer_required
@require_POST
def undo(request: HtmxHttpRequest, ranking_id: int) -> HttpResponse:
    """Take a ranking back (within RANKING_UNDO_SECONDS): its task is shown again, as answered."""
    try:
        ranking = ranking_get_for_trainer(ranking_id=ranking_id, trainer=request.user)
        assignment = services.ranking_undo(ranking_id=ranking.pk, trainer=request.user)
    except (RemovedByUndo, services.RankingConflict) as conflict:
        if not request.htmx:
            messages.error(request, str(conflict))
            return redirect("ranking:rank")
        # Only the toast changes (out of band); the task on screen stays as it is.
        response = render(
            request, f"{RANK}#toast", {"text": str(conflict), "error": True}, status=409
        )
        response["HX-Reswap"] = "none"
        return response
    answer = ranking_as_form_data(ranking=ranking, presentation_order=assignment.presentation_order)
    if not request.htmx:
        request.session[TAKEN_BACK_SESSION_KEY] = {
            "assignment_id": assignment.pk,
            "answer": answer,
        }
        messages.info(request, "Ranking taken back: change it and submit again.")
        return redirect("ranking:rank")
    screen = assignment_screen(assignment=assignment)
    return _render_card(
        request,
        assignment,
        screen=screen,
        form=_answer_form(answer=answer, screen=screen),
        toast={"text": "Ranking taken back: change it and submit again.", "seconds": 5},
    )


@trainer_required
@require_POST
def skip(request: HtmxHttpRequest, assignment_id: int) -> HttpResponse:
    try:
        assignment = assignment_get_for_trainer(assignment_id=assignment_id, trainer=request.user)
    except RemovedByUndo as gone:
        return _render_card(request, None, gone=str(gone), status=409)
    try:
        services.assignment_skip(
            assignment=assignment,
            trainer=request.user,
            reason=request.POST.get("skip_reason", ""),
        )
    except services.LeaseGivenBack as gone:
        return _render_card(request, None, gone=str(gone), status=409)
    except services.RankingConflict as conflict:
        screen = assignment_screen(assignment=assignment)
        form = RankingForm(request.POST, candidates=screen.candidates)
        return _render_card(
            request, assignment, screen=screen, form=form, conflict=str(conflict), status=409
        )
    except ValidationError as error:
        screen = assignment_screen(assignment=assignment)
        form = RankingForm(request.POST, candidates=screen.candidates)
        errors = validation_messages(error, labels={"reason": "Skip reason"})
        return _render_card(
            request, assignment, screen=screen, form=form, errors=errors, status=422
        )
    skipped = "Task skipped: it will not be offered to you again."
    if not request.htmx:
        messages.info(request, skipped)
        return _next_task(request)
    return _next_task(request, toast={"text": skipped, "seconds": 5})
