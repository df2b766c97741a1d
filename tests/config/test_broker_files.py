"""The embedded broker: a worker polling the folder never sees a message half written, and a file
it cannot decode is skipped instead of ending the worker."""

import logging
import os
from queue import Empty

import pytest
from kombu import Connection
from kombu.transport import filesystem

from config import broker_files
from tests.conftest import run_python


@pytest.fixture
def folders(tmp_path):
    data, control = tmp_path / "data", tmp_path / "control"
    data.mkdir()
    control.mkdir()
    return {
        "data_folder_in": str(data),
        "data_folder_out": str(data),
        "control_folder": str(control),
        "store_processed": False,
    }


def _channel(transport, folders):
    connection = Connection("filesystem://", transport=transport, transport_options=folders)
    return connection.channel()


def test_kombus_own_writer_lets_a_polling_worker_read_an_empty_message(folders, monkeypatch):
    """What the subclass fixes: the file exists under its queue's name before it is written."""
    channel = _channel(filesystem.Transport, folders)
    seen = []
    real_lock = filesystem.lock

    def poll_then_lock(file, flags):
        # The moment between creating the file and writing it, as a worker may poll.
        if flags == filesystem.LOCK_EX:
            try:
                seen.append(channel._get("jobs"))
            except Exception as error:
                seen.append(error)
        real_lock(file, flags)

    monkeypatch.setattr(filesystem, "lock", poll_then_lock)
    channel._put("jobs", {"task": "x"})
    assert len(seen) == 1 and isinstance(seen[0], ValueError)  # JSON of zero bytes


def test_a_message_is_invisible_until_whole_and_then_read_exactly(folders, monkeypatch):
    channel = _channel(broker_files.Transport, folders)
    seen = []
    real_replace = os.replace

    def poll_then_replace(source, target):
        try:
            seen.append(channel._get("jobs"))
        except Empty:
            seen.append("empty")
        real_replace(source, target)

    monkeypatch.setattr(broker_files.os, "replace", poll_then_replace)
    payload = {"task": "sampler.jobs.run", "args": [1, "x" * 100_000]}
    channel._put("jobs", payload)
    assert seen == ["empty"]
    assert channel._get("jobs") == payload
    assert os.listdir(folders["data_folder_in"]) == []


def test_an_unreadable_file_is_skipped_and_the_next_message_read(folders, caplog):
    channel = _channel(broker_files.Transport, folders)
    folder = folders["data_folder_in"]
    with open(os.path.join(folder, "0_left-by-a-crash.jobs.msg"), "wb"):
        pass
    channel._put("jobs", {"task": "after"})
    with caplog.at_level(logging.ERROR, logger="config.broker_files"):
        assert channel._get("jobs") == {"task": "after"}
    assert "unreadable message in broker queue jobs" in caplog.text
    with pytest.raises(Empty):
        channel._get("jobs")


def test_the_embedded_default_publishes_through_this_transport(tmp_path):
    code = (
        "import django; django.setup();"
        "from config.celery import app;"
        "connection = app.connection_for_write();"
        "print(type(connection.transport).__module__)"
    )
    test_run = {"DATABASE_URL", "CELERY_BROKER_URL", "TANDEM_MODE", "SECRET_KEY"}
    environment = {k: v for k, v in os.environ.items() if k not in test_run}
    environment |= {"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = run_python("-c", code, env=environment)
    assert result.stdout.split() == ["config.broker_files"]
