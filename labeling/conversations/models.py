"""Conversations: a tree of messages per conversation, and the drafts being typed into it."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from config.text import validate_one_line
from labeling.guidelines.models import guideline_version_key
from ranking.projects.models import project_key

# Bounds of what a trainer (or an import) can write, named in the messages that refuse more.
MAX_CONTENT_CHARS = 20000
MAX_TITLE_CHARS = 200
MAX_INSTRUCTIONS_CHARS = 4000
# A search of the Write list (the page's and the API's), cut to this.
MAX_SEARCH_CHARS = 200
# Messages on one root-to-leaf path: what the editor appends to and an import (or an export of
# the demonstrations read back) holds, alike.
MAX_PATH_MESSAGES = 200


class Conversation(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "In progress"
        FINISHED = "finished", "Finished"
        DISCARDED = "discarded", "Discarded"

    class Source(models.TextChoices):
        WRITTEN = "written", "Written in the app"
        IMPORTED = "imported", "Imported"

    class Mode(models.TextChoices):
        NORMAL = "normal", "Normal: write good demonstrations"
        RED_TEAM = "red_team", "Red team: make the model misbehave"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="conversations"
    )
    # One line, as the list shows it: a line break or control character in it is refused.
    title = models.CharField(max_length=MAX_TITLE_CHARS, blank=True, validators=[validate_one_line])
    instructions = models.TextField(
        blank=True,
        max_length=MAX_INSTRUCTIONS_CHARS,
        help_text="Optional topic or instructions for the writer.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.WRITTEN)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.NORMAL)
    # The leaf of the branch the editor shows; switching siblings moves it.
    active_leaf = models.ForeignKey(
        "labeling.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    project = project_key("conversations")
    # An imported conversation's turns as the import read them (importing.conversation_fingerprint),
    # by which a later import into the project skips them; kept when the conversation is edited
    # afterwards (one imported before fingerprints were kept got that of the turns its import
    # saved from migration 0019). Null (not "", as DJ001 would have it): none, for a
    # conversation written in the app; no value that a fingerprint could be.
    fingerprint = models.CharField(  # noqa: DJ001
        max_length=64, null=True, blank=True, editable=False
    )

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["owner", "status", "-updated_at"]),
            models.Index(fields=["status", "-updated_at"]),
            # An import's lookup: which of its fingerprints the project already holds.
            models.Index(fields=["project", "fingerprint"], name="conversation_fingerprint"),
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("labeling:editor", kwargs={"conversation_id": self.pk})


class Message(models.Model):
    """One turn. Messages form a tree: siblings (same parent) are alternative turns."""

    class Role(models.TextChoices):
        SYSTEM = "system", "System"
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Origin(models.TextChoices):
        HUMAN = "human", "Written by a human"
        MODEL = "model", "Written by a model"
        MODEL_EDITED = "model_edited", "Model suggestion edited by a human"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(max_length=MAX_CONTENT_CHARS)
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.HUMAN)
    # Provenance of model-written text: the sample it came from (model version, params, seed
    # live on the sample's job) and how far the saved text moved from it.
    sample = models.ForeignKey(
        "sampler.Sample", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    model_version = models.ForeignKey(
        "sampler.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="messages",
    )
    edit_distance = models.PositiveIntegerField(null=True, blank=True)
    # An edit of a model-written turn with no sample here (brought in by an import): that turn,
    # whose text the edit distance is measured against. Edits of the edit name it too, so every
    # branch is measured against the model's text, never against the previous edit.
    model_original = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # An alternative sampled for a ranking task: stored beside the writer's reply (same parent)
    # but not part of the writer's conversation: left out of the tree, the alternative
    # switcher, the turn counts and the demonstrations.
    is_candidate = models.BooleanField(default=False)
    # A model-written text that is no sample's (a suggestion its writer edited, a model's reply
    # brought in by an import) waiting for the content filter's verdict on its own words: set
    # when it is saved with a filter configured (or by the sweep, to judge it again:
    # ``message_texts_rejudge``), cleared by the worker that filters it
    # (``message_texts_moderate``). The outbox of that work: a publication lost to a broker
    # outage is made good by the periodic sweep, which filters every message still marked.
    # These three columns have database defaults too (labeling 0023): a process still running
    # code from before them (during an upgrade) inserts messages without them, and the sweep's
    # walk finds those texts as judged by no filter.
    text_moderation_pending = models.BooleanField(default=False, db_default=False)
    # The filter (name and version, as on its ``ModerationResult``) whose verdict on the
    # message's own words was stored last; empty when none was (a sample's text, one saved
    # while no filter was configured, one whose sample was deleted since). The sweep filters
    # again a message judged by no filter configured now (``message_texts_rejudge``).
    text_filter_name = models.CharField(max_length=200, blank=True, default="", db_default="")
    text_filter_version = models.CharField(max_length=100, blank=True, default="", db_default="")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
    )
    guideline_version = guideline_version_key("messages")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "parent"]),
            models.Index(fields=["role", "origin"]),
            models.Index(
                fields=["id"],
                condition=Q(text_moderation_pending=True),
                name="message_moderation_pending",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(origin="human") | Q(sample__isnull=True),
                name="message_human_origin_has_no_sample",
            ),
            models.CheckConstraint(
                condition=~Q(origin="human") | Q(model_original__isnull=True),
                name="message_human_origin_has_no_model_original",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


# The sides a composer's draft can be typed for (a trainer writes no system turn).
COMPOSER_ROLES = [(role.value, role.label) for role in (Message.Role.USER, Message.Role.ASSISTANT)]


class Draft(models.Model):
    """Text a trainer is typing, saved as they type so a reload or a crash loses nothing.

    One draft for the composer (``editing`` empty) and one per message being edited into a branch.
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="drafts")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="drafts"
    )
    editing = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="edit_drafts"
    )
    content = models.TextField(blank=True, max_length=MAX_CONTENT_CHARS)
    # The composer's: the side whose turn the text is typed for, so a draft left while another
    # tab sent that turn does not come back as the other side's unasked. Blank: not known (an
    # edit's draft, a draft saved before drafts kept it).
    role = models.CharField(
        max_length=16, choices=COMPOSER_ROLES, blank=True, default="", db_default=""
    )
    # The suggestion the trainer put into the editor, if any, and the pending suggestion job.
    sample = models.ForeignKey(
        "sampler.Sample", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    suggestion_job = models.ForeignKey(
        "sampler.GenerationJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "author"],
                condition=Q(editing__isnull=True),
                name="draft_one_composer_per_author",
            ),
            models.UniqueConstraint(
                fields=["conversation", "author", "editing"],
                condition=Q(editing__isnull=False),
                name="draft_one_per_edited_message",
            ),
        ]

    def __str__(self) -> str:
        return f"Draft by {self.author_id} in {self.conversation_id}"


class MessageWalk(models.Model):
    """How far a walk of the messages table by primary key has come (one row per walk, by
    name). The sweep's walk over the model-written messages to judge again
    (``message_texts_rejudge``) looks at a bounded number of rows a run, starting after
    ``after_id`` and wrapping around to the first once it reached the last, so every message is
    reached within one whole walk and no run reads the whole table. Kept in the database so a
    worker's restart goes on from where the walk stopped."""

    name = models.CharField(max_length=50, primary_key=True)
    # The id of the last message the walk looked at (0: start at the first).
    after_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} after message {self.after_id}"


def conversation_finished(path: str = "") -> Q:
    """Rows whose message's conversation is finished (``path``: the lookup from the rows to the
    message, such as "message__"). Only a finished conversation is a source of training data,
    ranking tasks and exports: one reopened (in progress again) or discarded is left out until it
    is finished again, and its turns are then the same (an edit is a new branch)."""
    return Q(**{f"{path}conversation__status": Conversation.Status.FINISHED})
