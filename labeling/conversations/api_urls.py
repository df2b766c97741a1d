from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from labeling.conversations import apis

CONVERSATION = "conversations/<id:conversation_id>"
MESSAGE = "messages/<id:message_id>"

urlpatterns = [
    path("conversations/", apis.ConversationListApi.as_view(), name="api-conversation-list"),
    path(f"{CONVERSATION}/", apis.ConversationDetailApi.as_view(), name="api-conversation-detail"),
    path(f"{CONVERSATION}/messages/", apis.MessageAppendApi.as_view(), name="api-message-append"),
    path(f"{CONVERSATION}/draft/", apis.DraftSaveApi.as_view(), name="api-draft-save"),
    *(
        path(f"{CONVERSATION}/{action}/", api.as_view(), name=f"api-conversation-{action}")
        for action, api in (
            ("finish", apis.ConversationFinishApi),
            ("discard", apis.ConversationDiscardApi),
            ("reopen", apis.ConversationReopenApi),
        )
    ),
    path(f"{MESSAGE}/branch/", apis.MessageBranchApi.as_view(), name="api-message-branch"),
    path(f"{MESSAGE}/switch/", apis.BranchSwitchApi.as_view(), name="api-branch-switch"),
]
