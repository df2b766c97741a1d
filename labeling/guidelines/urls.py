"""Labeling guidelines: the page (admins edit there), the panel of the writing and ranking pages."""

from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from labeling.guidelines import views

urlpatterns = [
    path("guidelines/", views.guidelines, name="guidelines"),
    path("guidelines/edit/", views.guidelines_edit, name="guidelines-edit"),
    path("guidelines/panel/", views.guidelines_panel, name="guidelines-panel"),
    path(
        "guidelines/<id:number>/read/", views.guidelines_acknowledge, name="guidelines-acknowledge"
    ),
]
