from django.urls import path

from ranking.rank import apis

urlpatterns = [
    path("ranking/claim/", apis.TaskClaimApi.as_view(), name="api-ranking-claim"),
    path(
        "ranking/assignments/<int:assignment_id>/submit/",
        apis.RankingSubmitApi.as_view(),
        name="api-ranking-submit",
    ),
    path(
        "ranking/assignments/<int:assignment_id>/skip/",
        apis.AssignmentSkipApi.as_view(),
        name="api-ranking-skip",
    ),
]
