"""Feedback pages: the thumbs / report widget on model-written text, a trainer's own feedback,
and the admins' overview. Each view: validate -> one service or selector -> render."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.roles import staff_required, trainer_required
from config.forms import PageForm
from config.htmx import HtmxHttpRequest, validation_messages
from config.querysets import page_of
from labeling.feedback import selectors, services
from labeling.feedback.forms import FeedbackFilterForm, RatingForm, ReportForm
from labeling.feedback.models import Feedback
from sampler.moderation.selectors import content_filter_problem

FEEDBACK = "labeling/feedback/target.html"
PAGE_SIZE = 50
# What the report form's "the content filter was wrong" checkbox posts when ticked.
FILTER_WRONG_TICKED = ReportForm.base_fields["filter_wrong"].checked_value


def _save(request: HtmxHttpRequest, target: selectors.FeedbackTarget) -> None:
    """Apply the posted thumb or report; ValidationError on bad input."""
    action = request.POST.get("action")
    if action == "rate":
        form = RatingForm(request.POST)
        if not form.is_valid():
            raise ValidationError("Rate with thumbs up or thumbs down.")
        services.feedback_rate(user=request.user, target=target, rating=form.cleaned_data["rating"])
    elif action == "report":
        form = ReportForm(request.POST)
        if not form.is_valid():
            raise ValidationError([e for errors in form.errors.values() for e in errors])
        services.feedback_report(user=request.user, target=target, **form.cleaned_data)
    else:
        raise ValidationError("Unknown feedback action.")


def _saved_note(request: HtmxHttpRequest, feedback: Feedback | None) -> str:
    """What a successful post did, in words: a report with nothing in it keeps no report."""
    empty = feedback is None or not (
        feedback.categories or feedback.comment or feedback.filter_report
    )
    if request.POST.get("action") == "report" and empty:
        return "No report kept: tick what is wrong or write a comment."
    return "Saved"


@trainer_required
@require_http_methods(["GET", "POST"])
def feedback_target(request: HtmxHttpRequest, kind: str, target_id: int) -> HttpResponse:
    """The user's feedback on one message or sample: shown (GET) and upserted (POST)."""
    target = selectors.feedback_target_get(kind=kind, target_id=target_id, user=request.user)
    return _feedback_page(request, target)


@trainer_required
@require_http_methods(["GET", "POST"])
def feedback_reply(request: HtmxHttpRequest, assignment_id: int, number: int) -> HttpResponse:
    """The user's feedback on one reply of their ranking task, by the number it is shown under
    (the Rank page's widget under each reply): shown (GET) and upserted (POST)."""
    target = selectors.feedback_target_of_reply(
        assignment_id=assignment_id, number=number, user=request.user
    )
    return _feedback_page(request, target)


def _feedback_page(request: HtmxHttpRequest, target: selectors.FeedbackTarget) -> HttpResponse:
    """The feedback widget of ``target`` (the page around it without htmx), after applying a
    POST: a plain form's is redirected back to the page (post/redirect/get)."""
    status, errors, typed = 200, [], None
    if request.method == "POST":
        try:
            _save(request, target)
        except ValidationError as error:
            # The typed comment comes back with the reason: nothing is lost.
            status, errors = 422, validation_messages(error)
            typed = {
                "comment": request.POST.get("comment", ""),
                "categories": request.POST.getlist("categories"),
                "filter_wrong": request.POST.get("filter_wrong") == FILTER_WRONG_TICKED,
            }
        else:
            if not request.htmx:
                messages.success(request, "Thanks, your feedback is saved.")
                return redirect(request.path)
    feedback = selectors.feedback_of_user(user=request.user, target=target)
    context = {
        "target": target,
        "feedback": feedback,
        "errors": errors,
        "typed": typed,
        "categories": Feedback.Category.choices,
        "reported_labels": [
            label for value, label in Feedback.Category.choices if value in feedback.categories
        ]
        if feedback
        else [],
        "saved": _saved_note(request, feedback) if request.method == "POST" and not errors else "",
    }
    template = f"{FEEDBACK}#feedback-widget" if request.htmx else FEEDBACK
    return render(request, template, context, status=status)


@trainer_required
def feedback_mine(request: HtmxHttpRequest) -> HttpResponse:
    form = PageForm(request.GET)
    if not form.is_valid():
        # No rows for a page that is none, as the list pages with filters refuse it.
        return render(request, "labeling/feedback/mine.html", {"form": form}, status=422)
    page = page_of(
        selectors.feedback_list_for_user(user=request.user),
        number=form.cleaned_data["page"],
        per_page=PAGE_SIZE,
    )
    return render(request, "labeling/feedback/mine.html", {"form": form, "page": page})


@trainer_required
def feedback_detail(request: HtmxHttpRequest, feedback_id: int) -> HttpResponse:
    feedback = selectors.feedback_get_for_user(feedback_id=feedback_id, user=request.user)
    # A reply of a ranking task is reached by the number it is shown under, never by its id.
    if address := selectors.feedback_reply_address(feedback=feedback, user=request.user):
        assignment_id, number = address
        return redirect("labeling:feedback-reply", assignment_id=assignment_id, number=number)
    kind, target_id = (
        ("message", feedback.message_id) if feedback.message_id else ("sample", feedback.sample_id)
    )
    return redirect("labeling:feedback-target", kind=kind, target_id=target_id)


@staff_required
def feedback_overview(request: HtmxHttpRequest) -> HttpResponse:
    form = FeedbackFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        # No counts nor rows for filters that select nothing definite: all the feedback would
        # pass for them (as the quality page answers); nor for a page that is none.
        # The filter's own trouble is no filter's: it is said whatever was asked.
        context = {"form": form, "filter_problem": content_filter_problem()}
        return render(request, "labeling/feedback/overview.html", context, status=422)
    filters = form.filters() if form.is_bound else selectors.FeedbackFilters()
    rows = selectors.feedback_filtered(filters=filters)
    page = page_of(
        rows.select_related("user", "model_version", "message", "sample", "moderation"),
        number=form.cleaned_data["page"] if form.is_bound else 1,
        per_page=PAGE_SIZE,
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "labeling/feedback/overview.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "by_model_version": selectors.feedback_counts_by_model_version(rows=rows),
            "confusion": selectors.filter_confusion(filters=filters),
            "filter_problem": content_filter_problem(),
            "category_names": Feedback.Category.choices,
        },
    )
