"""Pages for writing demonstrations. Each view: validate -> one service/selector -> render."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.roles import trainer_required
from config.htmx import validation_messages
from labeling import selectors, services
from labeling.forms import ConversationCreateForm, DraftForm, MessageForm, SuggestForm
from labeling.models import Attack, Conversation, Message
from sampler.selectors import generation_job_get

EDITOR = "labeling/editor.html"


def _editor_context(
    request: HttpRequest,
    conversation: Conversation,
    *,
    composer_text: str | None = None,
    composer_sample_id: int | None = None,
    errors: list[str] | None = None,
    edit_errors: dict[int, list[str]] | None = None,
    edit_texts: dict[int, str] | None = None,
) -> dict:
    draft = selectors.draft_get(conversation=conversation, author=request.user)
    if composer_text is None:
        composer_text = draft.content if draft else ""
        composer_sample_id = draft.sample_id if draft else None
    edit_drafts = selectors.edit_drafts(conversation=conversation, author=request.user)
    transcript = selectors.conversation_transcript(conversation=conversation)
    turns = []
    for entry in transcript:
        message_id = entry.message.pk
        saved = edit_drafts.get(message_id)
        turns.append(
            {
                "entry": entry,
                "edit_text": (edit_texts or {}).get(message_id)
                or (saved.content if saved else entry.message.content),
                "edit_open": saved is not None or message_id in (edit_errors or {}),
                "edit_errors": (edit_errors or {}).get(message_id, []),
            }
        )
    next_role = selectors.next_role(conversation=conversation)
    job = draft.suggestion_job if draft and draft.suggestion_job_id else None
    if job and (job.role != next_role or job.prefix_message_id != conversation.active_leaf_id):
        job = None  # suggestions for a turn that is no longer the next one
    return {
        "conversation": conversation,
        "turns": turns,
        "next_role": next_role,
        "editable": conversation.status == Conversation.Status.DRAFT,
        "composer_text": composer_text,
        "composer_sample_id": composer_sample_id or "",
        "errors": errors or [],
        "job": job,
        "suggest_form": SuggestForm(initial={"n": 3}),
        "attack_categories": Attack.Category.choices,
    }


def _render_editor(request: HttpRequest, conversation: Conversation, *, status: int = 200, **extra):
    conversation.refresh_from_db()
    context = _editor_context(request, conversation, **extra)
    template = f"{EDITOR}#editor" if request.htmx else EDITOR
    return render(request, template, context, status=status)


def _conversation(request: HttpRequest, conversation_id: int) -> Conversation:
    return selectors.conversation_get_for_user(conversation_id=conversation_id, user=request.user)


def _message(request: HttpRequest, message_id: int) -> Message:
    message = get_object_or_404(Message.objects.select_related("conversation"), pk=message_id)
    # Visibility is the conversation's: 404 for messages of conversations the user cannot see.
    selectors.conversation_get_for_user(conversation_id=message.conversation_id, user=request.user)
    return message


@trainer_required
def conversation_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    if status not in Conversation.Status.values:
        status = ""
    search = request.GET.get("q", "")[:200]
    conversations = selectors.conversation_list(user=request.user, status=status, search=search)
    return render(
        request,
        "labeling/conversation_list.html",
        {
            "conversations": conversations[:200],
            "status": status,
            "search": search,
            "statuses": Conversation.Status.choices,
            "create_form": ConversationCreateForm(),
        },
    )


@trainer_required
@require_POST
def conversation_create(request: HttpRequest) -> HttpResponse:
    form = ConversationCreateForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        return redirect("labeling:conversation-list")
    conversation = services.conversation_create(owner=request.user, **form.cleaned_data)
    return redirect("labeling:editor", conversation_id=conversation.pk)


@trainer_required
def editor(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _render_editor(request, _conversation(request, conversation_id))


@trainer_required
@require_POST
def message_append(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
    form = MessageForm(request.POST)
    form.is_valid()
    content = form.cleaned_data.get("content") or ""
    sample_id = form.cleaned_data.get("sample_id")
    try:
        services.message_append(
            conversation=conversation,
            author=request.user,
            content=content,
            role=request.POST.get("role") or None,
            sample_id=sample_id,
        )
    except ValidationError as error:
        # The typed text comes back in the composer with the reason: nothing is lost.
        return _render_editor(
            request,
            conversation,
            status=422,
            composer_text=content,
            composer_sample_id=sample_id,
            errors=validation_messages(error),
        )
    return _render_editor(request, conversation)


@trainer_required
@require_POST
def draft_save(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
    form = DraftForm(request.POST)
    if not form.is_valid():
        return render(
            request, f"{EDITOR}#draft-status", {"draft_error": form.errors.as_text()}, status=422
        )
    services.draft_save(
        conversation=conversation,
        author=request.user,
        content=form.cleaned_data["content"],
        sample_id=form.cleaned_data["sample_id"],
    )
    return render(request, f"{EDITOR}#draft-status", {"saved_at": timezone.now()})


@trainer_required
@require_POST
def edit_draft_save(request: HttpRequest, message_id: int) -> HttpResponse:
    message = _message(request, message_id)
    form = DraftForm(request.POST)
    if not form.is_valid():
        return render(
            request, f"{EDITOR}#draft-status", {"draft_error": form.errors.as_text()}, status=422
        )
    services.draft_save(
        conversation=message.conversation,
        author=request.user,
        content=form.cleaned_data["content"],
        editing=message,
    )
    return render(request, f"{EDITOR}#draft-status", {"saved_at": timezone.now()})


@trainer_required
@require_POST
def suggestion_request(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
    form = SuggestForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError(form.errors.as_text())
        job = services.suggestion_request(
            conversation=conversation,
            author=request.user,
            n=form.cleaned_data["n"],
            role=request.POST.get("role") or None,
        )
    except ValidationError as error:
        return render(
            request,
            f"{EDITOR}#suggestions",
            {"conversation": conversation, "suggestion_errors": validation_messages(error)},
            status=422,
        )
    return render(request, f"{EDITOR}#suggestions", {"conversation": conversation, "job": job})


@trainer_required
def suggestions(request: HttpRequest, conversation_id: int, job_id: int) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
    job = generation_job_get(job_id=job_id, user=request.user)
    if not request.htmx:
        return redirect("labeling:editor", conversation_id=conversation.pk)
    return render(request, f"{EDITOR}#suggestions", {"conversation": conversation, "job": job})


@trainer_required
@require_POST
def message_branch(request: HttpRequest, message_id: int) -> HttpResponse:
    message = _message(request, message_id)
    form = MessageForm(request.POST)
    form.is_valid()
    content = form.cleaned_data.get("content") or ""
    try:
        services.message_branch(
            original=message,
            author=request.user,
            content=content,
            sample_id=form.cleaned_data.get("sample_id"),
        )
    except ValidationError as error:
        return _render_editor(
            request,
            message.conversation,
            status=422,
            edit_errors={message.pk: validation_messages(error)},
            edit_texts={message.pk: content},
        )
    return _render_editor(request, message.conversation)


@trainer_required
@require_POST
def branch_switch(request: HttpRequest, message_id: int) -> HttpResponse:
    message = _message(request, message_id)
    services.branch_switch(message=message, user=request.user)
    return _render_editor(request, message.conversation)


def _status_change(request: HttpRequest, conversation_id: int, service, done: str) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
    try:
        service(conversation=conversation, user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(validation_messages(error)))
    else:
        messages.success(request, done)
    url = conversation.get_absolute_url()
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@trainer_required
@require_POST
def conversation_finish(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _status_change(
        request,
        conversation_id,
        services.conversation_finish,
        "Conversation finished: it can now be used for ranking tasks.",
    )


@trainer_required
@require_POST
def conversation_discard(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _status_change(
        request, conversation_id, services.conversation_discard, "Conversation discarded."
    )


@trainer_required
@require_POST
def conversation_reopen(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _status_change(
        request, conversation_id, services.conversation_reopen, "Conversation reopened for editing."
    )
