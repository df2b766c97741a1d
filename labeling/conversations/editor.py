"""The editor page, shared by the views that end on it (conversations' and red-team's): the
conversation or message a user may see, and the page rendered whole or as its htmx fragment."""

from django.http import HttpResponse
from django.shortcuts import render

from config.htmx import HtmxHttpRequest
from labeling.conversations import selectors
from labeling.conversations.forms import SuggestForm
from labeling.conversations.models import Conversation, Message
from sampler.generation.selectors import generation_job_queue_position
from sampler.jobs.selectors import jobs_progress

EDITOR = "labeling/conversations/editor.html"


def conversation_for_request(request: HtmxHttpRequest, conversation_id: int) -> Conversation:
    return selectors.conversation_get_for_user(conversation_id=conversation_id, user=request.user)


def message_for_request(request: HtmxHttpRequest, message_id: int) -> Message:
    # Visibility is the conversation's: 404 for messages of conversations the user cannot see.
    return selectors.message_get_for_user(message_id=message_id, user=request.user)


def editor_context(
    request: HtmxHttpRequest,
    conversation: Conversation,
    *,
    composer_text: str | None = None,
    composer_sample_id: int | None = None,
    composer_role: str | None = None,
    errors: list[str] | None = None,
    edit_errors: dict[int, list[str]] | None = None,
    edit_texts: dict[int, str] | None = None,
    unsent_kept: bool | None = None,
) -> dict:
    """What the editor page shows. ``unsent_kept``: a turn could not be sent because the
    conversation is no longer open (None: no such turn); whether it was kept as a draft.
    ``composer_role``: the side a refused turn was written as (it stays that side's until the
    trainer chooses to send it as the next turn's); left out, the side the composer's draft was
    typed for, when it holds text (another tab may have sent that side's turn since)."""
    draft = selectors.draft_get(conversation=conversation, author=request.user)
    saved_composer = draft.content if draft else ""
    if composer_text is None:
        composer_text = saved_composer
        composer_sample_id = draft.sample_id if draft else None
        if composer_role is None and draft is not None and draft.content.strip():
            composer_role = draft.role or None
    edit_drafts = selectors.edit_drafts(conversation=conversation, author=request.user)
    transcript = selectors.conversation_transcript(conversation=conversation)
    turns = []
    for entry in transcript:
        message_id = entry.message.pk
        saved = edit_drafts.get(message_id)
        sent_back = (edit_texts or {}).get(message_id)
        turns.append(
            {
                "entry": entry,
                "edit_text": sent_back or (saved.content if saved else entry.message.content),
                # Text the server sends back but does not keep (a refused edit): the page
                # keeps its local copy until a save succeeds.
                "edit_unsaved": bool(sent_back) and sent_back != (saved.content if saved else None),
                "edit_open": saved is not None or message_id in (edit_errors or {}),
                "edit_errors": (edit_errors or {}).get(message_id, []),
            }
        )
    editable = conversation.status == Conversation.Status.DRAFT
    # Edits refused with the conversation closed (finished or discarded in another tab): the
    # read-only page has no edit box, so the reason and the text are shown apart, with whether
    # the text is the turn's draft now (which Reopen brings back into its edit box).
    unsent_edits = []
    if not editable:
        for message_id in sorted({*(edit_errors or {}), *(edit_texts or {})}):
            text = (edit_texts or {}).get(message_id, "")
            saved = edit_drafts.get(message_id)
            unsent_edits.append(
                {
                    "message_id": message_id,
                    "text": text,
                    "errors": (edit_errors or {}).get(message_id, []),
                    "kept": bool(text) and saved is not None and saved.content == text,
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
        "written_role": composer_role if composer_role and composer_role != next_role else None,
        # The side whose turn is not next: the one text typed before another tab moved on is
        # for, when it is not the next side's.
        "other_role": Message.Role.USER
        if next_role == Message.Role.ASSISTANT
        else Message.Role.ASSISTANT,
        "editable": editable,
        "composer_text": composer_text,
        # A refused turn sent back into the box that is not its saved draft.
        "composer_unsaved": composer_text != saved_composer,
        "composer_sample_id": selectors.suggestion_for_next_turn(
            sample_id=composer_sample_id, conversation=conversation
        )
        or "",
        "errors": errors or [],
        "unsent": unsent_kept is not None,
        "unsent_kept": bool(unsent_kept),
        "unsent_edits": unsent_edits,
        "job": job,
        "queue_position": generation_job_queue_position(job=job) if job else 0,
        "suggestion_progress": jobs_progress(jobs=[job] if job else []),
        "suggest_form": SuggestForm(initial={"n": 3}),
    }


def render_editor(
    request: HtmxHttpRequest, conversation: Conversation, *, status: int = 200, **extra
) -> HttpResponse:
    conversation.refresh_from_db()
    context = editor_context(request, conversation, **extra)
    template = f"{EDITOR}#editor" if request.htmx else EDITOR
    return render(request, template, context, status=status)
