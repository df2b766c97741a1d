"""JSON API for conversations and their message trees.

Each view: validate with its input serializer -> one service or selector -> output serializer.
A trainer sees only their own conversations (others' answer 404), admins see all.

Serializers nested in views carry ``Meta.ref_name`` so OpenAPI component names stay unique
across apps (every app has an ``InputSerializer``).
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import IsTrainer
from config.api import (
    ApiView,
    SearchTextField,
    StrictCharField,
    StrictChoiceField,
    StrictIdField,
    StrictLimitOffsetPagination,
    no_body_fields,
    validated_input,
    validated_query,
)
from config.idempotency import idempotent
from config.text import validate_one_line
from labeling.conversations import selectors, services
from labeling.conversations.models import (
    COMPOSER_ROLES,
    MAX_CONTENT_CHARS,
    MAX_INSTRUCTIONS_CHARS,
    MAX_SEARCH_CHARS,
    MAX_TITLE_CHARS,
    Conversation,
    Message,
)
from ranking.projects.selectors import project_for_trainer


def _message_in(conversation: Conversation, message_id: int | None, field: str) -> Message | None:
    """The message ``message_id`` of this conversation (None when not given); a 400 naming
    ``field`` when the conversation has no such message."""
    if message_id is None:
        return None
    # A ranking alternative is stored beside the writer's reply but is no part of the tree.
    message = conversation.messages.filter(pk=message_id, is_candidate=False).first()
    if message is None:
        raise serializers.ValidationError({field: "No message with that id in this conversation."})
    return message


class MessageOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    parent_id = serializers.IntegerField(allow_null=True)
    role = serializers.ChoiceField(choices=Message.Role.choices)
    content = serializers.CharField()
    origin = serializers.ChoiceField(choices=Message.Origin.choices)
    sample_id = serializers.IntegerField(allow_null=True)
    model_version_id = serializers.IntegerField(allow_null=True)
    edit_distance = serializers.IntegerField(allow_null=True)
    author = serializers.CharField(source="author.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class ConversationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    instructions = serializers.CharField()
    owner = serializers.CharField(source="owner.username")
    project = serializers.CharField(
        source="project.slug",
        allow_null=True,
        help_text="Slug of the project the conversation belongs to, as stored.",
    )
    status = serializers.ChoiceField(choices=Conversation.Status.choices)
    source = serializers.ChoiceField(choices=Conversation.Source.choices)
    active_leaf_id = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class ConversationListItemSerializer(ConversationOutputSerializer):
    turn_count = serializers.IntegerField(
        help_text="Turns on the active branch (alternatives beside them are not counted)."
    )
    last_message_at = serializers.DateTimeField(allow_null=True)


class ConversationPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ConversationListItemSerializer(many=True)


class ConversationDetailSerializer(ConversationOutputSerializer):
    messages = MessageOutputSerializer(many=True)
    active_path = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Message ids of the active branch, root first.",
    )


class ConversationListApi(ApiView):
    """List and create share the collection URL, so they share one view."""

    permission_classes = [IsTrainer]
    query_checked_by_handler = frozenset({"get"})

    class FilterSerializer(serializers.Serializer):
        status = StrictChoiceField(
            choices=Conversation.Status.choices, required=False, allow_blank=True, default=""
        )
        q = SearchTextField(
            max_chars=MAX_SEARCH_CHARS, required=False, allow_blank=True, default=""
        )

        class Meta:
            ref_name = "ConversationFilter"

    class InputSerializer(serializers.Serializer):
        title = StrictCharField(
            required=False,
            allow_blank=True,
            default="",
            max_length=MAX_TITLE_CHARS,
            validators=[validate_one_line],
            help_text="One line: a line break or other control character is a 400.",
        )
        instructions = StrictCharField(
            required=False,
            allow_blank=True,
            default="",
            max_length=MAX_INSTRUCTIONS_CHARS,
        )
        project = StrictCharField(
            required=False,
            allow_blank=True,
            default="",
            trim_whitespace=False,  # " helpful " is no slug
            max_length=100,
            help_text="Slug of a project open to the caller; empty: the default project.",
        )

        class Meta:
            ref_name = "ConversationCreateInput"

    @extend_schema(
        operation_id="conversations_list",
        parameters=[
            FilterSerializer,
            OpenApiParameter("limit", int, description="Page size (at most 200)."),
            OpenApiParameter("offset", int),
        ],
        responses={200: ConversationPageSerializer},
    )
    def get(self, request: Request) -> Response:
        """Conversations the caller may see, newest activity first; ``q`` searches titles."""
        filters = validated_query(
            self.FilterSerializer, request.query_params, also=("limit", "offset")
        )
        conversations = selectors.conversation_list(
            user=request.user,
            status=filters["status"],
            search=filters["q"],
        )
        paginator = StrictLimitOffsetPagination()
        page = paginator.paginate_queryset(conversations, request, view=self)
        return paginator.get_paginated_response(
            ConversationListItemSerializer(page, many=True).data
        )

    @extend_schema(request=InputSerializer, responses={201: ConversationOutputSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        """Start a new conversation owned by the caller."""
        data = dict(validated_input(self.InputSerializer, request.data))
        slug = data.pop("project")
        project = project_for_trainer(trainer=request.user, slug=slug) if slug else None
        if slug and project is None:
            return Response(
                {"project": [services.project_closed_message(slug)]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        conversation = services.conversation_create(
            owner=request.user, project_id=project.pk if project else None, **data
        )
        return Response(
            ConversationOutputSerializer(conversation).data, status=status.HTTP_201_CREATED
        )


class ConversationDetailApi(ApiView):
    """A conversation with its whole message tree and the active branch."""

    permission_classes = [IsTrainer]

    @extend_schema(responses={200: ConversationDetailSerializer})
    def get(self, request: Request, conversation_id: int) -> Response:
        conversation = selectors.conversation_get_for_user(
            conversation_id=conversation_id, user=request.user
        )
        transcript = selectors.conversation_transcript(conversation=conversation)
        # The writer's tree only: replies sampled for ranking are not part of it.
        messages = (
            conversation.messages.filter(is_candidate=False)
            .select_related("author")
            .order_by("created_at", "id")
        )
        return Response(
            {
                **ConversationOutputSerializer(conversation).data,
                "messages": MessageOutputSerializer(messages, many=True).data,
                "active_path": [entry.message.pk for entry in transcript],
            }
        )


class MessageAppendApi(ApiView):
    """Add a turn after ``parent_id`` (the active leaf when left out)."""

    permission_classes = [IsTrainer]

    class InputSerializer(serializers.Serializer):
        content = StrictCharField(max_length=MAX_CONTENT_CHARS)
        parent_id = StrictIdField(required=False, allow_null=True)
        # Plain text, not a choice: the service checks it against the turn order and says
        # whose turn it is; an enum here would collide with sampler's "role" in the schema.
        role = StrictCharField(
            required=False,
            max_length=16,
            trim_whitespace=False,  # " user " is not a role
            help_text="Optional check: 'user' or 'assistant'.",
        )
        sample_id = StrictIdField(required=False, allow_null=True)

        class Meta:
            ref_name = "MessageAppendInput"

        def validate_role(self, value: str) -> str:
            if value not in (Message.Role.USER, Message.Role.ASSISTANT):
                raise serializers.ValidationError("Must be 'user' or 'assistant'.")
            return value

    @extend_schema(request=InputSerializer, responses={201: MessageOutputSerializer})
    @idempotent
    def post(self, request: Request, conversation_id: int) -> Response:
        data = validated_input(self.InputSerializer, request.data)
        conversation = selectors.conversation_get_for_user(
            conversation_id=conversation_id, user=request.user
        )
        message = services.message_append(
            conversation=conversation,
            author=request.user,
            content=data["content"],
            parent=_message_in(conversation, data.get("parent_id"), "parent_id"),
            role=data.get("role"),
            sample_id=data.get("sample_id"),
        )
        return Response(MessageOutputSerializer(message).data, status=status.HTTP_201_CREATED)


class MessageBranchApi(ApiView):
    """Edit a turn without losing it: the edit becomes a sibling on the active branch."""

    permission_classes = [IsTrainer]

    class InputSerializer(serializers.Serializer):
        content = StrictCharField(max_length=MAX_CONTENT_CHARS)
        sample_id = StrictIdField(required=False, allow_null=True)

        class Meta:
            ref_name = "MessageBranchInput"

    @extend_schema(request=InputSerializer, responses={201: MessageOutputSerializer})
    @idempotent
    def post(self, request: Request, message_id: int) -> Response:
        data = validated_input(self.InputSerializer, request.data)
        original = selectors.message_get_for_user(message_id=message_id, user=request.user)
        sibling = services.message_branch(
            original=original,
            author=request.user,
            content=data["content"],
            sample_id=data.get("sample_id"),
        )
        return Response(MessageOutputSerializer(sibling).data, status=status.HTTP_201_CREATED)


class BranchSwitchApi(ApiView):
    """Make the branch through this message the active one (down to its newest leaf)."""

    permission_classes = [IsTrainer]

    @extend_schema(request=None, responses={200: ConversationOutputSerializer})
    def post(self, request: Request, message_id: int) -> Response:
        no_body_fields(request)
        message = selectors.message_get_for_user(message_id=message_id, user=request.user)
        conversation = services.branch_switch(message=message, user=request.user)
        return Response(ConversationOutputSerializer(conversation).data)


class DraftSaveApi(ApiView):
    """Keep what the trainer is typing (the composer, or an edit of ``editing_id``)."""

    permission_classes = [IsTrainer]

    class InputSerializer(serializers.Serializer):
        # Blank is allowed: an emptied composer is a draft too.
        content = StrictCharField(
            allow_blank=True, trim_whitespace=False, max_length=MAX_CONTENT_CHARS
        )
        editing_id = StrictIdField(required=False, allow_null=True)
        sample_id = StrictIdField(required=False, allow_null=True)
        # Plain text, as the append's: the side the composer's text is typed for.
        role = StrictCharField(
            required=False,
            allow_blank=True,
            max_length=16,
            trim_whitespace=False,
            help_text="The composer's: 'user' or 'assistant' ('' or left out: not known).",
        )

        class Meta:
            ref_name = "DraftSaveInput"

        def validate_role(self, value: str) -> str:
            if value not in ("", *dict(COMPOSER_ROLES)):
                raise serializers.ValidationError("Must be 'user', 'assistant' or ''.")
            return value

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        editing_id = serializers.IntegerField(allow_null=True)
        content = serializers.CharField()
        sample_id = serializers.IntegerField(allow_null=True)
        role = serializers.CharField()
        updated_at = serializers.DateTimeField()

        class Meta:
            ref_name = "DraftOutput"

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer})
    def put(self, request: Request, conversation_id: int) -> Response:
        data = validated_input(self.InputSerializer, request.data)
        conversation = selectors.conversation_get_for_user(
            conversation_id=conversation_id, user=request.user
        )
        draft = services.draft_save(
            conversation=conversation,
            author=request.user,
            content=data["content"],
            editing=_message_in(conversation, data.get("editing_id"), "editing_id"),
            sample_id=data.get("sample_id"),
            role=data.get("role", ""),
        )
        return Response(self.OutputSerializer(draft).data)


class _ConversationTransitionApi(ApiView):
    """POST with no body -> one status-changing service -> the conversation."""

    permission_classes = [IsTrainer]

    @extend_schema(request=None, responses={200: ConversationOutputSerializer})
    def post(self, request: Request, conversation_id: int) -> Response:
        no_body_fields(request)
        conversation = selectors.conversation_get_for_user(
            conversation_id=conversation_id, user=request.user
        )
        conversation = self.service(conversation=conversation, user=request.user)
        return Response(ConversationOutputSerializer(conversation).data)


class ConversationFinishApi(_ConversationTransitionApi):
    """Mark the conversation finished (needs a user and an assistant turn on its active
    branch); asked again, the same 200, nothing changed."""

    service = staticmethod(services.conversation_finish)


class ConversationDiscardApi(_ConversationTransitionApi):
    """Set the conversation aside (reopen brings it back); asked again, the same 200."""

    service = staticmethod(services.conversation_discard)


class ConversationReopenApi(_ConversationTransitionApi):
    """Make a finished or discarded conversation editable again; sent to one in progress, the
    same 200, nothing changed."""

    service = staticmethod(services.conversation_reopen)
