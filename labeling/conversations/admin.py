import zlib

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from config.admin import ReadOnlyAdminMixin
from config.forms import (
    CheckboxField,
    DefaultProjectChoiceField,
    ModelChoiceField,
    StorableCharField,
)
from config.text import validate_one_line
from config.uploads import UploadSizeLimit, upload_size_limit_install
from labeling.conversations.importing import (
    ImportReport,
    import_summary,
    jsonl_lines,
    uploaded_stream,
)
from labeling.conversations.models import Conversation, Draft, Message, MessageWalk
from labeling.conversations.services import (
    conversations_import,
    draft_editing_problem,
    draft_role_problem,
)
from ranking.projects.selectors import project_list

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_ERRORS_SHOWN = 200


class ConversationImportForm(forms.Form):
    file = forms.FileField(
        required=False,
        help_text=(
            f"JSONL or gzipped JSONL, at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB: one "
            '{"messages": [{"role": "user", "content": "..."}, ...], "title": "..."} per line.'
        ),
    )
    owner = ModelChoiceField(queryset=get_user_model().objects.none())
    # It starts every title, and a title is one line.
    title_prefix = StorableCharField(required=False, max_length=50, validators=[validate_one_line])
    project = DefaultProjectChoiceField(
        help_text="The campaign the conversations belong to (its ranking tasks and exports)."
    )
    allow_duplicates = CheckboxField(
        value="on",
        label="Allow duplicates",
        help_text=(
            "Import every line, also those whose turns the project already holds from an "
            "import or an earlier line holds (by default they are skipped)."
        ),
    )

    def __init__(self, *args, upload_too_large: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.upload_too_large = upload_too_large
        self.fields["owner"].queryset = (
            get_user_model().objects.filter(is_active=True).order_by("username")
        )
        self.fields["project"].queryset = project_list()

    def clean_file(self):
        file = self.cleaned_data["file"]
        limit = f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB"
        if self.upload_too_large or (file is not None and file.size > MAX_UPLOAD_BYTES):
            raise ValidationError(f"{limit}: split it, or use manage.py import_conversations.")
        if file is None:
            raise ValidationError("Choose a JSONL file.")
        return file


class MessageInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Message
    extra = 0
    fields = ("parent", "role", "origin", "content", "author", "created_at")
    readonly_fields = ("created_at",)
    raw_id_fields = ("parent", "author")
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    """A conversation's status and the branch shown (``active_leaf``) are the app's: finishing
    (which needs a user and an assistant turn on the branch shown), discarding and reopening
    are ``conversation_finish``, ``conversation_discard`` and ``conversation_reopen`` (the
    writer's or an admin's, on the editor page or through the API), and the branch shown moves
    by ``branch_switch``. Shown here read-only, so the admin cannot save a conversation finished
    with no turns or showing another conversation's message."""

    list_display = ("id", "title", "owner", "status", "source", "message_count", "updated_at")
    list_filter = ("status", "source", "mode", "created_at")
    search_fields = ("title", "instructions", "owner__username", "messages__content")
    raw_id_fields = ("owner",)
    readonly_fields = ("status", "active_leaf", "finished_at")
    date_hierarchy = "created_at"
    list_select_related = ("owner",)
    inlines = [MessageInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        # The writer's own messages; replies sampled for ranking tasks are not theirs. Counted
        # in the list's query, not once per row, and in a subquery: a search on the messages'
        # text joins them again, which would multiply a joined count.
        own = (
            Message.objects.filter(conversation=OuterRef("pk"), is_candidate=False)
            .order_by()
            .values("conversation")
            .annotate(count=Count("pk"))
            .values("count")
        )
        return super().get_queryset(request).annotate(own_messages=Coalesce(Subquery(own), 0))

    @admin.display(description="Messages", ordering="own_messages")
    def message_count(self, obj: Conversation) -> int:
        return obj.own_messages

    def get_urls(self):
        import_url = path(
            "import/",
            self.admin_site.admin_view(self.import_view),
            name="labeling_conversation_import",
        )
        return [import_url, *super().get_urls()]

    # The size limit must be installed before anything reads the request body, and the CSRF
    # check reads it; so CSRF is checked inside, after the handler is in place (Django's
    # documented pattern for per-view upload handlers).
    @csrf_exempt
    def import_view(self, request: HttpRequest) -> HttpResponse:
        size_limit = upload_size_limit_install(request, limit=MAX_UPLOAD_BYTES)
        return csrf_protect(self._import_view)(request, size_limit)

    def _import_view(self, request: HttpRequest, size_limit: UploadSizeLimit) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        report = None
        if request.method == "POST":
            form = ConversationImportForm(
                request.POST, request.FILES, upload_too_large=size_limit.exceeded
            )
            if form.is_valid():
                stream = uploaded_stream(form.cleaned_data["file"], limit=MAX_UPLOAD_BYTES)
                project = form.cleaned_data["project"]  # None: the default project
                try:
                    report = conversations_import(
                        lines=jsonl_lines(stream),
                        owner=form.cleaned_data["owner"],
                        title_prefix=form.cleaned_data["title_prefix"],
                        project_id=project.pk if project is not None else None,
                        allow_duplicates=form.cleaned_data["allow_duplicates"],
                    )
                except (OSError, EOFError, zlib.error) as error:  # a truncated or corrupt .gz
                    form.add_error(
                        "file", f"Reading the file failed part way: {error}. Nothing was imported."
                    )
                    report = ImportReport()
                except ValidationError as error:  # a closed project: nothing imported
                    form.add_error(None, error)
                    report = ImportReport()
                if report.ok and not form.errors:
                    messages.success(request, import_summary(report))
                    return redirect("admin:labeling_conversation_changelist")
        else:
            form = ConversationImportForm(initial={"owner": request.user.pk})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import conversations from JSONL",
            "form": form,
            **self._errors_context(report),
        }
        # A post shown again imported nothing (the page says why); 422 so scripts see it too.
        status = 422 if request.method == "POST" else 200
        return TemplateResponse(
            request, "admin/labeling/conversation/import.html", context, status=status
        )

    @staticmethod
    def _errors_context(report: ImportReport | None) -> dict:
        if report is None or report.ok:
            return {}
        return {
            "line_errors": report.errors[:MAX_ERRORS_SHOWN],
            "more_errors": max(0, len(report.errors) - MAX_ERRORS_SHOWN),
        }


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """A turn is never changed once written, in the app either: an edit is a new branch
    (``message_branch``), so that what was ranked, exported, trained on or stored as a red-team
    attack's prompt is still the text it was. Shown here (and on its conversation's page),
    never added, changed or deleted; a turn goes with its conversation."""

    list_display = (
        "id",
        "conversation",
        "role",
        "origin",
        "short_content",
        "author",
        "model_version",
        "created_at",
    )
    list_filter = ("role", "origin", "model_version", "created_at")
    search_fields = ("content", "conversation__title", "author__username")
    raw_id_fields = ("conversation", "parent", "sample", "author", "model_original")
    list_select_related = ("conversation", "author", "model_version")

    @admin.display(description="Content")
    def short_content(self, obj: Message) -> str:
        return obj.content[:80]


class DraftAdminForm(forms.ModelForm):
    """The message a draft edits is one of the draft's conversation's, and an edit's draft is
    typed for no side, as ``draft_save`` has it."""

    class Meta:
        model = Draft
        fields = (
            "conversation",
            "author",
            "editing",
            "content",
            "role",
            "sample",
            "suggestion_job",
        )

    def clean(self) -> dict:
        cleaned = super().clean()
        conversation, editing = cleaned.get("conversation"), cleaned.get("editing")
        if problem := draft_role_problem(role=cleaned.get("role") or "", editing=editing):
            self.add_error("role", problem)
        if conversation is None or editing is None:
            return cleaned  # a field's own error says why, or the draft edits no message
        if problem := draft_editing_problem(conversation=conversation, editing=editing):
            self.add_error("editing", problem)
        return cleaned


@admin.register(Draft)
class DraftAdmin(admin.ModelAdmin):
    form = DraftAdminForm
    list_display = ("id", "conversation", "author", "editing", "short_content", "updated_at")
    list_filter = ("updated_at",)
    search_fields = ("content", "author__username", "conversation__title")
    raw_id_fields = ("conversation", "author", "editing", "sample", "suggestion_job")

    @admin.display(description="Content")
    def short_content(self, obj: Draft) -> str:
        return obj.content[:80]


@admin.register(MessageWalk)
class MessageWalkAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Where the content filter's walk of the messages stands (read only: the sweep moves it)."""

    list_display = ("name", "after_id")
    list_filter = ("name",)
    search_fields = ("name",)
