import pytest

from labeling.guidelines import services as guideline_services


@pytest.fixture
def version_2(admin_user):
    guideline_services.guideline_version_ensure_current()
    return guideline_services.guideline_version_create(
        author=admin_user, text="# Guidelines\n\nBe brief.", change_note="Shorter."
    )
