"""The embedded default's broker: kombu's filesystem transport, with each message written whole
before any worker can see it.

kombu's own ``_put`` creates ``<time>_<uuid>.<queue>.msg`` and then writes into it; a worker
polling the folder can move and read the file in between (its lock is advisory and the mover
does not take it), get zero bytes, and die on the JSON error. Here the payload goes to a name no
queue matches and is renamed into place (a rename within one folder is atomic), so a reader sees
no file or the whole message. A file that still cannot be decoded (left by a crash, or by an
older writer) is logged and skipped rather than ending the worker; the job it carried is
re-published by the jobs' sweeper (sampler.jobs), as any lost message is.

Selected in config/settings.py (``CELERY_BROKER_TRANSPORT``) whenever the broker URL is
``filesystem://``.
"""

import contextlib
import logging
import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps

logger = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: dict, **kwargs) -> None:
        """Write ``payload`` under a private name, then rename it to its queue's name."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        # No queue's reader matches it: readers take names of the form "<id>.<queue>.msg".
        partial = os.path.join(self.data_folder_out, f"partial-{uuid.uuid4()}")
        try:
            with open(partial, "wb") as file:
                file.write(dumps(payload).encode())
            os.replace(partial, os.path.join(self.data_folder_out, name))
        except OSError as error:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise ChannelError(f"Cannot add a message to {self.data_folder_out!r}") from error

    def _get(self, queue: str) -> dict:
        """The next message of ``queue``; one that cannot be decoded is removed and skipped."""
        while True:
            try:
                return super()._get(queue)
            except ValueError:
                # The parent has already taken the file out of the folder.
                logger.error("Skipped an unreadable message in broker queue %s", queue)


class Transport(filesystem.Transport):
    Channel = Channel
