"""Feedback on model-written text: the widget's target (a message or a sample, or a reply of a
ranking task), the trainer's own feedback, and the admins' overview."""

from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from labeling.feedback import views

urlpatterns = [
    path("feedback/", views.feedback_overview, name="feedback"),
    path("feedback/mine/", views.feedback_mine, name="feedback-mine"),
    path("feedback/<id:feedback_id>/", views.feedback_detail, name="feedback-detail"),
    path("feedback/<str:kind>/<id:target_id>/", views.feedback_target, name="feedback-target"),
    # A reply of a ranking task, by its assignment and the number it is shown under.
    path(
        "feedback/reply/<id:assignment_id>/<id:number>/",
        views.feedback_reply,
        name="feedback-reply",
    ),
]
