from django.urls import path

from ranking.rank import views

urlpatterns = [
    path("rank/", views.rank, name="rank"),
    path("rank/claim/", views.claim, name="claim"),
    path("rank/<int:assignment_id>/submit/", views.submit, name="submit"),
    path("rank/<int:assignment_id>/skip/", views.skip, name="skip"),
    path("rank/rankings/<int:ranking_id>/undo/", views.undo, name="undo"),
]
