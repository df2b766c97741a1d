"""Labeling guidelines: the page (admins edit there), the panel of the writing and ranking pages."""

from django.urls import path

from labeling.guidelines import views

urlpatterns = [
    path("guidelines/", views.guidelines, name="guidelines"),
    path("guidelines/edit/", views.guidelines_edit, name="guidelines-edit"),
    path("guidelines/panel/", views.guidelines_panel, name="guidelines-panel"),
    path(
        "guidelines/<int:number>/read/", views.guidelines_acknowledge, name="guidelines-acknowledge"
    ),
]
