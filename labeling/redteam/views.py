"""Red-teaming: marking successful attacks in the editor and writing their corrections, and the
admins' page of attacks, success rates and re-runs against a policy version."""

from contextlib import suppress

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import reswap, retarget

from accounts.roles import staff_required, trainer_required
from config.forms import id_in_range
from config.htmx import HtmxHttpRequest, form_cleaned_data, validation_messages
from config.querysets import page_of
from labeling.conversations.editor import message_for_request, render_editor
from labeling.conversations.forms import MessageForm
from labeling.conversations.models import Conversation, Message
from labeling.conversations.services import draft_save
from labeling.redteam import selectors, services
from labeling.redteam.forms import AttackFilterForm, AttackForm, AttackRunForm
from labeling.redteam.models import Attack
from sampler.jobs.selectors import jobs_progress

SLOT = "labeling/redteam/editor.html#attack-slot"
PAGE = "labeling/redteam/overview.html"
RUN_PAGE = "labeling/redteam/run.html"


def _render_slot(
    request: HtmxHttpRequest,
    message: Message,
    *,
    status: int = 200,
    errors: list[str] | None = None,
    correction_text: str | None = None,
    form: AttackForm | None = None,
) -> HttpResponse:
    message = selectors.attack_slot_message(message_id=message.pk)
    context = {
        "message": message,
        "conversation": message.conversation,
        "editable": message.conversation.status == Conversation.Status.DRAFT,
        "attack_errors": errors or [],
        "correction_text": correction_text,
        "attack_form_data": form.typed() if form is not None else {},
    }
    response = render(request, SLOT, context, status=status)
    if status >= 400:
        # The correction form targets the whole editor; its errors go back into the slot.
        response = reswap(retarget(response, f"#attack-slot-{message.pk}"), "outerHTML")
    return response


def _slot_or_editor(request: HtmxHttpRequest, message: Message) -> HttpResponse:
    """After a change: the slot again (htmx), or back to the editor."""
    if not request.htmx:
        return redirect("labeling:editor", conversation_id=message.conversation_id)
    return _render_slot(request, message)


def _refused(
    request: HtmxHttpRequest, message: Message, error: ValidationError, **slot
) -> HttpResponse:
    """The reasons, with what was typed: in the slot (htmx), or as messages on the editor."""
    errors = validation_messages(error)
    if not request.htmx:
        for text in errors:
            messages.error(request, text)
        return redirect("labeling:editor", conversation_id=message.conversation_id)
    return _render_slot(request, message, status=422, errors=errors, **slot)


def _attack_for_request(request: HtmxHttpRequest, attack_id: int) -> tuple[Attack | None, Message]:
    """The attack and the reply it marks, when the caller may see that reply's conversation.
    A withdrawn attack (a stale page) is None, with the reply the form names in ``message``;
    404 when that is missing too."""
    attack = selectors.attack_find(attack_id=attack_id)
    if attack is not None:
        return attack, message_for_request(request, attack.message_id)
    message_id = id_in_range(request.POST.get("message", ""))
    if message_id is None:
        raise Http404("No such attack.")
    return None, message_for_request(request, message_id)


def _correction_kept(request: HtmxHttpRequest, message: Message, content: str) -> HttpResponse:
    """A correction for a mark withdrawn meanwhile: the text goes to the reply's edit box (its
    draft, as that box keeps it), and the editor (htmx or not) says why it was not saved as a
    correction."""
    reason = (
        f"{services.ATTACK_GONE} Your text is kept in this reply's edit box: save it as a new "
        "branch, or mark the attack again."
    )
    # A text the draft refuses (too long, say) is still in the answer's edit box. Kept also when
    # the conversation was finished meanwhile (its page then shows no edit box): Reopen brings
    # it back.
    with suppress(ValidationError, PermissionDenied):
        draft_save(
            conversation=message.conversation,
            author=request.user,
            content=content,
            editing=message,
            unsent=True,
        )
    return render_editor(
        request,
        message.conversation,
        status=409,
        edit_errors={message.pk: [reason]},
        edit_texts={message.pk: content},
    )


@trainer_required
@require_POST
def attack_create(request: HtmxHttpRequest, message_id: int) -> HttpResponse:
    message = message_for_request(request, message_id)
    form = AttackForm(request.POST)
    try:
        data = form_cleaned_data(form)
        services.attack_record(
            message=message, user=request.user, category=data["category"], note=data["note"]
        )
    except ValidationError as error:
        return _refused(request, message, error, form=form)
    return _slot_or_editor(request, message)


@trainer_required
@require_POST
def attack_withdraw(request: HtmxHttpRequest, attack_id: int) -> HttpResponse:
    attack, message = _attack_for_request(request, attack_id)
    try:
        if attack is not None:
            services.attack_withdraw(attack=attack, user=request.user)
    except ValidationError as error:
        return _refused(request, message, error)
    return _slot_or_editor(request, message)


@trainer_required
@require_POST
def attack_correct(request: HtmxHttpRequest, attack_id: int) -> HttpResponse:
    attack, message = _attack_for_request(request, attack_id)
    form = MessageForm(request.POST)
    content = form.typed_content()
    # Marked again since (in another tab): the mark this reply has now takes the correction.
    attack = attack or selectors.attack_of_message(message_id=message.pk)
    if attack is None:
        return _correction_kept(request, message, content)
    try:
        if not form.is_valid():
            raise ValidationError(form.errors)
        services.attack_correct(attack=attack, author=request.user, content=content)
    except ValidationError as error:
        if getattr(error, "code", None) == "attack_gone":
            return _correction_kept(request, message, content)
        # The typed correction comes back with the reason: nothing is lost.
        return _refused(request, message, error, correction_text=content)
    if not request.htmx:
        return redirect("labeling:editor", conversation_id=message.conversation_id)
    return render_editor(request, message.conversation)


# ---- admins' overview -------------------------------------------------------------------------


def _overview_context(
    request: HtmxHttpRequest,
    run_form: AttackRunForm | None = None,
    filter_form: AttackFilterForm | None = None,
) -> dict:
    filter_form = filter_form or AttackFilterForm(request.GET)
    refused = not filter_form.is_valid()
    category = filter_form.cleaned_data.get("category", "")
    version = filter_form.cleaned_data.get("model_version")
    model_version_id = version.pk if version is not None else None
    # The dropdown offers the versions with red-team replies, and the one filtered by when it
    # has none: otherwise "Any" would show as chosen over that version's (empty) list.
    version_options = selectors.red_team_model_versions()
    if version is not None and version.pk not in dict(version_options):
        version_options.append((version.pk, version.name))
    runs = selectors.attack_run_list()
    context = {
        "category_names": Attack.Category.choices,
        "category": category,
        "filter_form": filter_form,
        "model_version": version,
        "model_version_id": model_version_id,
        "version_options": version_options,
        "runs": runs,
        "runs_progress": jobs_progress(jobs=runs),
        "run_form": run_form or AttackRunForm(),
    }
    if refused:
        # A refused filter shows neither figures nor attacks: none is computed.
        return context
    query = "&".join(
        f"{key}={value}"
        for key, value in (("category", category), ("model_version", model_version_id or ""))
        if value
    )
    # Every figure follows both filters.
    return context | {
        "by_model_version": selectors.attack_success_by_model_version(
            category=category, model_version_id=model_version_id
        ),
        "by_category": selectors.attack_counts_by_category(model_version_id=model_version_id),
        "page": page_of(
            selectors.attack_list(category=category, model_version_id=model_version_id),
            number=filter_form.cleaned_data.get("page", 1),
            per_page=50,
        ),
        "query": query,
    }


@staff_required
def redteam_overview(request: HtmxHttpRequest) -> HttpResponse:
    filter_form = AttackFilterForm(request.GET)
    # No figures for a filter that selects nothing definite (every attack would pass for it):
    # the filter's error, as the quality page answers one.
    status = 200 if filter_form.is_valid() else 422
    return render(request, PAGE, _overview_context(request, filter_form=filter_form), status=status)


@staff_required
@require_POST
def attack_run_start(request: HtmxHttpRequest) -> HttpResponse:
    form = AttackRunForm(request.POST)
    try:
        data = form_cleaned_data(form)
        services.attack_run_create(
            requested_by=request.user, model_version=data["model_version"], project=data["project"]
        )
    except ValidationError as error:
        for text in validation_messages(error):
            form.add_error(None, text)
        return render(request, PAGE, _overview_context(request, run_form=form), status=422)
    # The runs table says it is queued (or not sent yet), in the part it polls: gone once it runs.
    return redirect(reverse("labeling:redteam") + "#attack-runs")


@staff_required
def attack_runs(request: HtmxHttpRequest) -> HttpResponse:
    """The runs table alone: what the page polls while a run may change by itself, and what
    its "Check again" button asks for. Opened by itself, the Red team page."""
    if not request.htmx:
        return redirect("labeling:redteam")
    runs = selectors.attack_run_list()
    context = {"runs": runs, "runs_progress": jobs_progress(jobs=runs)}
    return render(request, f"{PAGE}#attack-runs", context)


def _run_page(request: HtmxHttpRequest, run_id: int, *, status: int = 200) -> HttpResponse:
    run = selectors.attack_run_get(run_id=run_id)
    context = {
        "run": run,
        # Polled while the run may change by itself; queued for no worker, it says so instead.
        "run_progress": jobs_progress(jobs=[run]),
        "results": selectors.attack_run_results(run=run),
        "retry": selectors.attack_run_retry(run=run),
        **{
            f"{name}_count": count
            for name, count in selectors.attack_run_failure_counts(run=run).items()
        },
    }
    # Asked by htmx (its poll, its "Check again" button): the run's part of the page alone.
    template = f"{RUN_PAGE}#run-status" if request.htmx else RUN_PAGE
    return render(request, template, context, status=status)


@staff_required
def attack_run_detail(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    return _run_page(request, run_id)


@staff_required
@require_POST
def attack_run_retry_failed(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = selectors.attack_run_get(run_id=run_id)
    try:
        retry = services.attack_run_retry_failed(run=run, requested_by=request.user)
    except ValidationError as error:
        for text in validation_messages(error):
            messages.error(request, text)
        return _run_page(request, run_id, status=409)
    # The retry's page says it is queued (or not sent yet), in the part it polls (gone once it
    # runs), and what it retries.
    left_out = retry.refusals_left_out
    if left_out:
        messages.info(
            request,
            f"{left_out} failed attack{pluralize(left_out)} of run {run.pk} left out: the model "
            f"refused {pluralize(left_out, 'it,them')} for what "
            f"{pluralize(left_out, 'it asks,they ask')} (sent again, "
            f"{pluralize(left_out, 'it,they')} would be refused again).",
        )
    return redirect("labeling:attack-run", run_id=retry.pk)
