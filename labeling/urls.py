from django.urls import path

from labeling import feedback_views, guideline_views, redteam_views, views

app_name = "labeling"

urlpatterns = [
    path("", views.conversation_list, name="conversation-list"),
    path("new/", views.conversation_create, name="conversation-create"),
    path("<int:conversation_id>/", views.editor, name="editor"),
    path("<int:conversation_id>/messages/", views.message_append, name="message-append"),
    path("<int:conversation_id>/draft/", views.draft_save, name="draft-save"),
    path("<int:conversation_id>/suggest/", views.suggestion_request, name="suggest"),
    path("<int:conversation_id>/suggestions/<int:job_id>/", views.suggestions, name="suggestions"),
    path("<int:conversation_id>/finish/", views.conversation_finish, name="finish"),
    path("<int:conversation_id>/discard/", views.conversation_discard, name="discard"),
    path("<int:conversation_id>/reopen/", views.conversation_reopen, name="reopen"),
    path("messages/<int:message_id>/branch/", views.message_branch, name="message-branch"),
    path("messages/<int:message_id>/edit-draft/", views.edit_draft_save, name="edit-draft-save"),
    path("messages/<int:message_id>/switch/", views.branch_switch, name="branch-switch"),
]

# Feedback on model-written text: the widget's target (a message or a sample), the trainer's own
# feedback, and the admins' overview.
urlpatterns += [
    path("feedback/", feedback_views.feedback_overview, name="feedback"),
    path("feedback/mine/", feedback_views.feedback_mine, name="feedback-mine"),
    path("feedback/<int:feedback_id>/", feedback_views.feedback_detail, name="feedback-detail"),
    path(
        "feedback/<str:kind>/<int:target_id>/",
        feedback_views.feedback_target,
        name="feedback-target",
    ),
]

# Labeling guidelines: the page (admins edit there), the panel of the writing and ranking pages.
urlpatterns += [
    path("guidelines/", guideline_views.guidelines, name="guidelines"),
    path("guidelines/edit/", guideline_views.guidelines_edit, name="guidelines-edit"),
    path("guidelines/panel/", guideline_views.guidelines_panel, name="guidelines-panel"),
    path(
        "guidelines/<int:number>/read/",
        guideline_views.guidelines_acknowledge,
        name="guidelines-acknowledge",
    ),
]

# Red-teaming: attacks marked in the editor, their corrections, and the admins' overview.
urlpatterns += [
    path("messages/<int:message_id>/attack/", redteam_views.attack_create, name="attack-create"),
    path("attacks/<int:attack_id>/correct/", redteam_views.attack_correct, name="attack-correct"),
    path(
        "attacks/<int:attack_id>/withdraw/", redteam_views.attack_withdraw, name="attack-withdraw"
    ),
    path("redteam/", redteam_views.redteam_overview, name="redteam"),
    path("redteam/runs/", redteam_views.attack_runs, name="attack-runs"),
    path("redteam/runs/new/", redteam_views.attack_run_start, name="attack-run-start"),
    path("redteam/runs/<int:run_id>/", redteam_views.attack_run_detail, name="attack-run"),
]
