from django.urls import path

from ranking.rank import views

urlpatterns = [
    path("rank/", views.rank, name="rank"),
    path("rank/<int:assignment_id>/submit/", views.submit, name="submit"),
    path("rank/<int:assignment_id>/skip/", views.skip, name="skip"),
]
