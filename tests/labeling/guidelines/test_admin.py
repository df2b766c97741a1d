"""The admin shows guideline versions and who read them, and changes neither: a version is
history (rows and exports record its number), written only by saving the Guidelines page."""

import pytest
from django.urls import reverse

from labeling.guidelines import services as guideline_services
from labeling.guidelines.models import GuidelineAcknowledgement, GuidelineVersion

pytestmark = pytest.mark.django_db


def test_the_admin_cannot_rewrite_add_or_delete_a_guideline_version(admin_client_, version_2):
    change = reverse("admin:labeling_guidelineversion_change", args=[version_2.pk])
    posted = admin_client_.post(
        change,
        {"project": version_2.project_id, "number": 7, "text": "Rewritten.", "change_note": ""},
    )
    version_2.refresh_from_db()
    assert (version_2.number, version_2.text) == (2, "# Guidelines\n\nBe brief.")
    assert posted.status_code == 403
    page = admin_client_.get(change)
    assert page.status_code == 200
    assert 'name="text"' not in page.content.decode()

    add = reverse("admin:labeling_guidelineversion_add")
    assert admin_client_.get(add).status_code == 403
    delete = reverse("admin:labeling_guidelineversion_delete", args=[version_2.pk])
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    assert GuidelineVersion.objects.filter(pk=version_2.pk).exists()


def test_the_admin_cannot_record_that_someone_read_a_version(admin_client_, trainer, version_2):
    add = reverse("admin:labeling_guidelineacknowledgement_add")
    posted = admin_client_.post(add, {"user": trainer.pk, "version": version_2.pk})
    assert posted.status_code == 403
    assert not GuidelineAcknowledgement.objects.exists()

    read = guideline_services.guideline_acknowledge(user=trainer, version=version_2)
    change = reverse("admin:labeling_guidelineacknowledgement_change", args=[read.pk])
    assert admin_client_.get(change).status_code == 200
    admin_client_.post(change, {"user": trainer.pk, "version": version_2.pk - 1})
    read.refresh_from_db()
    assert read.version_id == version_2.pk
