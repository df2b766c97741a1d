from django.urls import path

from labeling.conversations import views

urlpatterns = [
    path("", views.conversation_list, name="conversation-list"),
    path("new/", views.conversation_create, name="conversation-create"),
    path("<int:conversation_id>/", views.editor, name="editor"),
    path("<int:conversation_id>/messages/", views.message_append, name="message-append"),
    path("<int:conversation_id>/draft/", views.draft_save, name="draft-save"),
    path("<int:conversation_id>/suggest/", views.suggestion_request, name="suggest"),
    path("<int:conversation_id>/suggestions/<int:job_id>/", views.suggestions, name="suggestions"),
    path(
        "<int:conversation_id>/suggestions/<int:job_id>/cancel/",
        views.suggestion_cancel,
        name="suggestion-cancel",
    ),
    path(
        "<int:conversation_id>/suggestions/<int:job_id>/retry/",
        views.suggestion_retry,
        name="suggestion-retry",
    ),
    path("<int:conversation_id>/finish/", views.conversation_finish, name="finish"),
    path("<int:conversation_id>/discard/", views.conversation_discard, name="discard"),
    path("<int:conversation_id>/reopen/", views.conversation_reopen, name="reopen"),
    path("messages/<int:message_id>/branch/", views.message_branch, name="message-branch"),
    path("messages/<int:message_id>/edit-draft/", views.edit_draft_save, name="edit-draft-save"),
    path("messages/<int:message_id>/switch/", views.branch_switch, name="branch-switch"),
]
