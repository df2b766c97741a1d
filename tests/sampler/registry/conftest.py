"""A registered version whose model has since gone."""

import shutil

import pytest

from sampler.models import ModelVersion


@pytest.fixture
def gone_folder(db, tmp_path):
    """A version's model folder, removed since it was registered."""
    folder = tmp_path / "removed-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"n_positions": 64}')
    version = ModelVersion.objects.create(
        name="gone", path=str(folder), kind=ModelVersion.Kind.POLICY
    )
    shutil.rmtree(folder)
    return version
