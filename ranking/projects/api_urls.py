from django.urls import path

from ranking.projects import apis

urlpatterns = [
    path("projects/", apis.ProjectListApi.as_view(), name="api-projects"),
    path("projects/<int:project_id>/", apis.ProjectDetailApi.as_view(), name="api-project"),
    path(
        "projects/<int:project_id>/progress/",
        apis.ProjectProgressApi.as_view(),
        name="api-project-progress",
    ),
]
