from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from ranking.rank import apis

urlpatterns = [
    path("ranking/claim/", apis.TaskClaimApi.as_view(), name="api-ranking-claim"),
    path(
        "ranking/assignments/<id:assignment_id>/submit/",
        apis.RankingSubmitApi.as_view(),
        name="api-ranking-submit",
    ),
    path(
        "ranking/assignments/<id:assignment_id>/skip/",
        apis.AssignmentSkipApi.as_view(),
        name="api-ranking-skip",
    ),
]
