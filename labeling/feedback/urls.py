"""Feedback on model-written text: the widget's target (a message or a sample), the trainer's own
feedback, and the admins' overview."""

from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from labeling.feedback import views

urlpatterns = [
    path("feedback/", views.feedback_overview, name="feedback"),
    path("feedback/mine/", views.feedback_mine, name="feedback-mine"),
    path("feedback/<id:feedback_id>/", views.feedback_detail, name="feedback-detail"),
    path("feedback/<str:kind>/<id:target_id>/", views.feedback_target, name="feedback-target"),
]
