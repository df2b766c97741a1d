"""The admin lists exports and retries or cancels them; it starts none: an export started on
its add page was a row no worker was told about, queued for ever. Exports start from the
export page, which queues them."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_the_admin_has_no_page_to_add_an_export(admin_client_):
    assert admin_client_.get(reverse("admin:ranking_datasetexport_add")).status_code == 403
    listing = admin_client_.get(reverse("admin:ranking_datasetexport_changelist"))
    assert listing.status_code == 200
    assert reverse("admin:ranking_datasetexport_add") not in listing.content.decode()
