from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from labeling.conversations import views

urlpatterns = [
    path("", views.conversation_list, name="conversation-list"),
    path("new/", views.conversation_create, name="conversation-create"),
    path("<id:conversation_id>/", views.editor, name="editor"),
    path("<id:conversation_id>/messages/", views.message_append, name="message-append"),
    path("<id:conversation_id>/draft/", views.draft_save, name="draft-save"),
    path("<id:conversation_id>/suggest/", views.suggestion_request, name="suggest"),
    path("<id:conversation_id>/suggestions/<id:job_id>/", views.suggestions, name="suggestions"),
    path(
        "<id:conversation_id>/suggestions/<id:job_id>/cancel/",
        views.suggestion_cancel,
        name="suggestion-cancel",
    ),
    path(
        "<id:conversation_id>/suggestions/<id:job_id>/retry/",
        views.suggestion_retry,
        name="suggestion-retry",
    ),
    path("<id:conversation_id>/finish/", views.conversation_finish, name="finish"),
    path("<id:conversation_id>/discard/", views.conversation_discard, name="discard"),
    path("<id:conversation_id>/reopen/", views.conversation_reopen, name="reopen"),
    path("messages/<id:message_id>/branch/", views.message_branch, name="message-branch"),
    path("messages/<id:message_id>/edit-draft/", views.edit_draft_save, name="edit-draft-save"),
    path("messages/<id:message_id>/switch/", views.branch_switch, name="branch-switch"),
]
