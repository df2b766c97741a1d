from django.urls import path

from sampler.comparisons import views

urlpatterns = [
    path("compare/vote/", views.vote, name="vote"),
    path("compare/vote/<int:item_id>/", views.vote_submit, name="vote-submit"),
]
