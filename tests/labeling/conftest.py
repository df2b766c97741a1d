from labeling.conversations import services
from labeling.conversations.models import Message

HTMX = {"HTTP_HX_REQUEST": "true"}


def write_turns(conversation, author, *texts) -> list[Message]:
    """Append ``texts`` as alternating turns, the user's first."""
    return [
        services.message_append(conversation=conversation, author=author, content=text)
        for text in texts
    ]


def model_reply(conversation, parent, model_version, text="hello!") -> Message:
    """A reply the model wrote, used unedited (what the suggestion flow stores), as the active
    leaf of its conversation."""
    reply = Message.objects.create(
        conversation=conversation,
        parent=parent,
        role="assistant",
        content=text,
        origin=Message.Origin.MODEL,
        model_version=model_version,
    )
    conversation.active_leaf = reply
    conversation.save(update_fields=["active_leaf"])
    return reply
