from django.urls import path

from ranking.projects import views

urlpatterns = [
    path("rank/projects/", views.project_picker, name="project-picker"),
    path("rank/projects/choose/", views.project_choose, name="project-choose"),
    path("projects/", views.project_manage, name="project-manage"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/gold/", views.project_gold_create, name="project-gold"),
]
