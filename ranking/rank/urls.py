from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from ranking.rank import views

urlpatterns = [
    path("rank/", views.rank, name="rank"),
    path("rank/claim/", views.claim, name="claim"),
    path("rank/<id:assignment_id>/submit/", views.submit, name="submit"),
    path("rank/<id:assignment_id>/skip/", views.skip, name="skip"),
    path("rank/rankings/<id:ranking_id>/undo/", views.undo, name="undo"),
]
