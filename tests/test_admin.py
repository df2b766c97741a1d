"""Every model is in the admin, and its list page (with search) renders for staff."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

APPS = ("labeling", "ranking", "sampler")
every_model = pytest.mark.parametrize(
    "model",
    [m for app in APPS for m in apps.get_app_config(app).get_models()],
    ids=lambda m: m.__name__,
)


def test_every_model_of_the_apps_is_registered():
    missing = [
        model.__name__
        for app in APPS
        for model in apps.get_app_config(app).get_models()
        if model not in admin.site._registry
    ]
    assert missing == []


@every_model
def test_changelist_with_search_renders(admin_client_, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    response = admin_client_.get(url, {"q": "x"})
    assert response.status_code == 200


@every_model
def test_every_model_admin_has_list_columns_filters_and_search(model):
    model_admin = admin.site._registry[model]

    assert list(model_admin.list_display) != ["__str__"]
    assert model_admin.list_filter
    assert model_admin.search_fields


@every_model
def test_the_changelist_shows_its_filters(admin_client_, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    html = admin_client_.get(url).content.decode()

    assert 'id="changelist-filter"' in html
    assert 'id="searchbar"' in html
