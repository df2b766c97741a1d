from django.urls import path

from labeling import apis

urlpatterns = [
    path("conversations/", apis.ConversationListApi.as_view(), name="api-conversation-list"),
    path(
        "conversations/<int:conversation_id>/",
        apis.ConversationDetailApi.as_view(),
        name="api-conversation-detail",
    ),
    path(
        "conversations/<int:conversation_id>/messages/",
        apis.MessageAppendApi.as_view(),
        name="api-message-append",
    ),
    path(
        "conversations/<int:conversation_id>/draft/",
        apis.DraftSaveApi.as_view(),
        name="api-draft-save",
    ),
    path(
        "conversations/<int:conversation_id>/finish/",
        apis.ConversationFinishApi.as_view(),
        name="api-conversation-finish",
    ),
    path(
        "conversations/<int:conversation_id>/discard/",
        apis.ConversationDiscardApi.as_view(),
        name="api-conversation-discard",
    ),
    path(
        "conversations/<int:conversation_id>/reopen/",
        apis.ConversationReopenApi.as_view(),
        name="api-conversation-reopen",
    ),
    path(
        "messages/<int:message_id>/branch/",
        apis.MessageBranchApi.as_view(),
        name="api-message-branch",
    ),
    path(
        "messages/<int:message_id>/switch/",
        apis.BranchSwitchApi.as_view(),
        name="api-branch-switch",
    ),
]
