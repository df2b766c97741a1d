"""The settings a test run uses (pyproject.toml's ``DJANGO_SETTINGS_MODULE``): the project's
own, ``config.settings``, with the folders a run writes in a temporary folder of the run's own,
so that a test run writes nothing into the checkout's ``var/`` (exports, models, uploads, the
embedded broker's folders, the pseudonym key).

In the run's process, ``VAR_DIR`` is that folder and ``MODEL_ROOT`` and ``EXPORT_ROOT`` are
under it whatever the environment said, set in the environment before ``config.settings``
reads it (it makes some of these files as it loads). The processes a test starts inherit them,
keeping what the test sets for them; the run that made the folder removes it at its end
(``tests/conftest.py``).
"""

import os
import tempfile

# Whether this process made the folder (and removes it at the end of the run).
TEST_VAR_DIR_OWNED = "TANDEM_TEST_VAR_DIR" not in os.environ
if TEST_VAR_DIR_OWNED:
    _folder = tempfile.mkdtemp(prefix="tandem-test-")
    os.environ["TANDEM_TEST_VAR_DIR"] = _folder
    os.environ["VAR_DIR"] = _folder
    os.environ["MODEL_ROOT"] = os.path.join(_folder, "models")
    os.environ["EXPORT_ROOT"] = os.path.join(_folder, "exports")
TEST_VAR_DIR = os.environ["TANDEM_TEST_VAR_DIR"]
# Importing config loads Celery, which reads the settings while this module is still loading:
# it reads config.settings (under the same environment), and so does every process a test
# starts.
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"

from config.settings import *  # noqa: E402, F403
