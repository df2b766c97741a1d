from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Max, Q, QuerySet

from accounts.roles import is_admin
from labeling.models import Conversation, Message


def conversation_list(
    *, user: AbstractBaseUser, status: str = "", search: str = ""
) -> QuerySet[Conversation]:
    """Conversations visible to ``user``: their own, or everyone's for admins."""
    conversations = Conversation.objects.select_related("owner").annotate(
        turn_count=Count("messages"), last_message_at=Max("messages__created_at")
    )
    if not is_admin(user):
        conversations = conversations.filter(owner=user)
    if status:
        conversations = conversations.filter(status=status)
    if search:
        conversations = conversations.filter(
            Q(title__icontains=search) | Q(instructions__icontains=search)
        )
    return conversations.order_by("-updated_at")


def conversation_counts_for_user(*, user: AbstractBaseUser) -> dict[str, int]:
    counts = Conversation.objects.filter(owner=user).aggregate(
        draft=Count("id", filter=Q(status=Conversation.Status.DRAFT)),
        finished=Count("id", filter=Q(status=Conversation.Status.FINISHED)),
    )
    return {key: value or 0 for key, value in counts.items()}


def message_path(*, message: Message) -> list[Message]:
    """The messages from the root of the tree down to ``message``, oldest first."""
    by_id = {
        m.pk: m
        for m in Message.objects.filter(conversation_id=message.conversation_id).only(
            "id", "parent_id", "role", "content", "conversation_id"
        )
    }
    path: list[Message] = []
    current: Message | None = by_id.get(message.pk, message)
    while current is not None:
        path.append(current)
        current = by_id.get(current.parent_id) if current.parent_id else None
    return list(reversed(path))
