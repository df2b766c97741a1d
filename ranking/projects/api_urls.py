from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from ranking.projects import apis

urlpatterns = [
    path("projects/", apis.ProjectListApi.as_view(), name="api-projects"),
    path("projects/<id:project_id>/", apis.ProjectDetailApi.as_view(), name="api-project"),
    path(
        "projects/<id:project_id>/progress/",
        apis.ProjectProgressApi.as_view(),
        name="api-project-progress",
    ),
]
