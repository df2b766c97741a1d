"""Pages for writing demonstrations. Each view: validate -> one service/selector -> render."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from accounts.roles import trainer_required
from config.forms import add_validation_errors
from config.htmx import (
    HtmxHttpRequest,
    form_cleaned_data,
    redirect_page,
    validation_messages,
)
from config.querysets import page_of
from labeling.conversations import selectors, services
from labeling.conversations.editor import (
    EDITOR,
    conversation_for_request,
    message_for_request,
    render_editor,
)
from labeling.conversations.forms import (
    ConversationCreateForm,
    ConversationFilterForm,
    DraftForm,
    MessageForm,
    SuggestForm,
)
from labeling.conversations.models import COMPOSER_ROLES, Conversation, Message
from sampler.generation.selectors import generation_job_queue_position
from sampler.generation.services import generation_job_cancel, generation_job_retry
from sampler.jobs.selectors import jobs_progress
from sampler.jobs.services import job_cancel_refusal

PAGE_SIZE = 200


def _list_page(
    request: HtmxHttpRequest, create_form: ConversationCreateForm | None = None
) -> HttpResponse:
    """The Write list, filtered by its query string, under the New conversation form:
    ``create_form`` is a refused one, shown open with what was typed and why (a 422)."""
    filter_form = ConversationFilterForm(request.GET)
    # No list for a status that is none (every conversation would pass for it), nor for a page
    # that is none: the filter's error, as the API's 400 and the Red team page's 422 answer one.
    refused = not filter_form.is_valid()
    status = "" if refused else filter_form.cleaned_data["status"]
    # Kept in the box when another filter is refused; empty when it is itself (given twice).
    search = filter_form.cleaned_data.get("q", "")
    page = None
    if not refused:
        conversations = selectors.conversation_list(user=request.user, status=status, search=search)
        page = page_of(conversations, number=filter_form.cleaned_data["page"], per_page=PAGE_SIZE)
    return render(
        request,
        "labeling/conversations/list.html",
        {
            "filter_form": filter_form,
            "page": page,
            # The filters the pager's links keep.
            "query": urlencode(
                {key: value for key, value in (("q", search), ("status", status)) if value}
            ),
            "status": status,
            "search": search,
            "statuses": Conversation.Status.choices,
            "create_form": create_form or ConversationCreateForm(trainer=request.user),
        },
        status=422 if refused or create_form is not None else 200,
    )


@trainer_required
def conversation_list(request: HtmxHttpRequest) -> HttpResponse:
    return _list_page(request)


@trainer_required
@require_POST
def conversation_create(request: HtmxHttpRequest) -> HttpResponse:
    form = ConversationCreateForm(request.POST, trainer=request.user)
    if form.is_valid():
        data = dict(form.cleaned_data)
        project = data.pop("project")
        try:
            conversation = services.conversation_create(
                owner=request.user, project_id=project.pk if project is not None else None, **data
            )
        except ValidationError as error:
            add_validation_errors(form, error)
        else:
            return redirect("labeling:editor", conversation_id=conversation.pk)
    # The form comes back as typed, each reason by its box: nothing typed is lost.
    return _list_page(request, create_form=form)


@trainer_required
def editor(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    return render_editor(request, conversation_for_request(request, conversation_id))


def _keep_unsent(
    request: HtmxHttpRequest,
    conversation: Conversation,
    content: str,
    editing: Message | None = None,
    role: str | None = None,
) -> bool | None:
    """A refused turn or edit (``editing``) of a conversation finished or discarded meanwhile
    (another tab): the page turns read-only and shows the text with the reason; it is kept as
    the composer's or the turn's draft too (a turn's with the side it was ``role``-written
    for), which Reopen brings back. Whether it was kept (False: over the limit, the page still
    shows it, to copy); None: the conversation is open, or there is no text."""
    if conversation.status == Conversation.Status.DRAFT or not content.strip():
        return None
    try:
        services.draft_save(
            conversation=conversation,
            author=request.user,
            content=content,
            editing=editing,
            unsent=True,
            role=role if role in dict(COMPOSER_ROLES) else "",
        )
    except ValidationError:
        return False
    return True


@trainer_required
@require_POST
def message_append(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    conversation = conversation_for_request(request, conversation_id)
    form = MessageForm(request.POST)
    # On any error the typed text comes back.
    content = form.typed_content()
    sample_id = form.cleaned_data.get("sample_id")
    role = request.POST.get("role") or None
    try:
        if not form.is_valid():
            raise ValidationError(form.errors)
        services.message_append(
            conversation=conversation,
            author=request.user,
            content=content,
            role=role,
            sample_id=sample_id,
            after_id=form.cleaned_data["after"],
        )
    except ValidationError as error:
        conversation.refresh_from_db()
        kept = _keep_unsent(request, conversation, content, role=role)
        # The typed text comes back in the composer with the reason: nothing is lost.
        return render_editor(
            request,
            conversation,
            status=422,
            composer_text=content,
            composer_sample_id=sample_id,
            # Written for the side whose turn it no longer is (another tab sent a turn): it
            # is not sent as the other side's unless the trainer says so.
            composer_role=role,
            errors=validation_messages(error),
            unsent_kept=kept,
        )
    return render_editor(request, conversation)


def _draft_save(
    request: HtmxHttpRequest, conversation: Conversation, editing: Message | None = None
) -> HttpResponse:
    """Keep the composer's text (``editing`` empty) or an edit's; the answer is a status line."""
    form = DraftForm(request.POST)
    try:
        data = form_cleaned_data(form)
        services.draft_save(
            conversation=conversation,
            author=request.user,
            content=data["content"],
            editing=editing,
            # The composer may hold a suggestion; an edit's draft never does.
            sample_id=data["sample_id"] if editing is None else None,
            after_id=data["after"] if editing is None else None,
            # The side the composer's text is typed for (an edit's form sends none).
            role=data["role"],
        )
    except ValidationError as error:
        context = {"draft_error": " ".join(validation_messages(error))}
        return render(request, f"{EDITOR}#draft-status", context, status=422)
    return render(request, f"{EDITOR}#draft-status", {"saved_at": timezone.now()})


@trainer_required
@require_POST
def draft_save(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    return _draft_save(request, conversation_for_request(request, conversation_id))


@trainer_required
@require_POST
def edit_draft_save(request: HtmxHttpRequest, message_id: int) -> HttpResponse:
    message = message_for_request(request, message_id)
    return _draft_save(request, message.conversation, editing=message)


@trainer_required
@require_POST
def suggestion_request(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    conversation = conversation_for_request(request, conversation_id)
    form = SuggestForm(request.POST)
    try:
        job = services.suggestion_request(
            conversation=conversation,
            author=request.user,
            n=form_cleaned_data(form)["n"],
            role=request.POST.get("role") or None,
        )
    except ValidationError as error:
        return render(
            request,
            f"{EDITOR}#suggestions",
            {"conversation": conversation, "suggestion_errors": validation_messages(error)},
            status=422,
        )
    return _render_suggestions(request, conversation, job)


def _render_suggestions(
    request: HtmxHttpRequest,
    conversation: Conversation,
    job,
    *,
    errors: tuple[str, ...] = (),
    status: int = 200,
) -> HttpResponse:
    """The suggestions slot: queued behind N / generating / done, with cancel and retry; it
    polls while the job may change by itself, and says so when it waits for no worker."""
    context = {
        "conversation": conversation,
        "job": job,
        "queue_position": generation_job_queue_position(job=job),
        "suggestion_progress": jobs_progress(jobs=[job]),
        "suggestion_errors": errors,
    }
    return render(request, f"{EDITOR}#suggestions", context, status=status)


@trainer_required
def suggestions(request: HtmxHttpRequest, conversation_id: int, job_id: int) -> HttpResponse:
    conversation = conversation_for_request(request, conversation_id)
    job = selectors.suggestion_job_get(conversation=conversation, job_id=job_id, user=request.user)
    if not request.htmx:
        return redirect("labeling:editor", conversation_id=conversation.pk)
    return _render_suggestions(request, conversation, job)


@trainer_required
@require_POST
def suggestion_cancel(request: HtmxHttpRequest, conversation_id: int, job_id: int) -> HttpResponse:
    conversation = conversation_for_request(request, conversation_id)
    job = selectors.suggestion_job_get(conversation=conversation, job_id=job_id, user=request.user)
    refusal = job_cancel_refusal(job=generation_job_cancel(job=job, user=request.user))
    if not request.htmx:
        if refusal:
            messages.error(request, refusal)
        return redirect("labeling:editor", conversation_id=conversation.pk)
    job = selectors.suggestion_job_get(conversation=conversation, job_id=job_id, user=request.user)
    if refusal:
        return _render_suggestions(request, conversation, job, errors=(refusal,), status=409)
    return _render_suggestions(request, conversation, job)


@trainer_required
@require_POST
def suggestion_retry(request: HtmxHttpRequest, conversation_id: int, job_id: int) -> HttpResponse:
    conversation = conversation_for_request(request, conversation_id)
    job = selectors.suggestion_job_get(conversation=conversation, job_id=job_id, user=request.user)
    try:
        generation_job_retry(job=job, user=request.user)
    except ValidationError as error:
        return render(
            request,
            f"{EDITOR}#suggestions",
            {
                "conversation": conversation,
                "job": job,
                "suggestion_progress": jobs_progress(jobs=[job]),
                "suggestion_errors": validation_messages(error),
            },
            status=409,
        )
    if not request.htmx:
        return redirect("labeling:editor", conversation_id=conversation.pk)
    job = selectors.suggestion_job_get(conversation=conversation, job_id=job_id, user=request.user)
    return _render_suggestions(request, conversation, job)


@trainer_required
@require_POST
def message_branch(request: HtmxHttpRequest, message_id: int) -> HttpResponse:
    message = message_for_request(request, message_id)
    form = MessageForm(request.POST)
    content = form.typed_content()
    try:
        if not form.is_valid():
            raise ValidationError(form.errors)
        services.message_branch(
            original=message,
            author=request.user,
            content=content,
            sample_id=form.cleaned_data.get("sample_id"),
        )
    except ValidationError as error:
        conversation = message.conversation
        conversation.refresh_from_db()
        # Shown as unsent when the conversation was closed meanwhile (see editor_context).
        _keep_unsent(request, conversation, content, editing=message)
        return render_editor(
            request,
            conversation,
            status=422,
            edit_errors={message.pk: validation_messages(error)},
            edit_texts={message.pk: content},
        )
    return render_editor(request, message.conversation)


@trainer_required
@require_POST
def branch_switch(request: HtmxHttpRequest, message_id: int) -> HttpResponse:
    message = message_for_request(request, message_id)
    try:
        services.branch_switch(message=message, user=request.user)
    except ValidationError as error:
        # A tab that missed the finish or discard: the page, read-only now, says why.
        return render_editor(
            request, message.conversation, status=422, errors=validation_messages(error)
        )
    return render_editor(request, message.conversation)


def _status_change(
    request: HtmxHttpRequest, conversation_id: int, service, done: str
) -> HttpResponse:
    conversation = conversation_for_request(request, conversation_id)
    try:
        service(conversation=conversation, user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(validation_messages(error)))
    else:
        messages.success(request, done)
    url = conversation.get_absolute_url()
    return redirect_page(request, url)


@trainer_required
@require_POST
def conversation_finish(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    return _status_change(
        request,
        conversation_id,
        services.conversation_finish,
        "Conversation finished: it can now be used for ranking tasks.",
    )


@trainer_required
@require_POST
def conversation_discard(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    return _status_change(
        request, conversation_id, services.conversation_discard, "Conversation discarded."
    )


@trainer_required
@require_POST
def conversation_reopen(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    return _status_change(
        request, conversation_id, services.conversation_reopen, "Conversation reopened for editing."
    )
