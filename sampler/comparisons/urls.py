from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from sampler.comparisons import views

urlpatterns = [
    path("compare/vote/", views.vote, name="vote"),
    path("compare/vote/<id:item_id>/", views.vote_submit, name="vote-submit"),
]
