"""`make run`, step 1, in one process (one Django start instead of three): apply migrations,
create the demo accounts (first run only), register the default model, and write what the
next steps need to the JSON file named on the command line: the worker groups and the
first-run credentials (which scripts/embedded_ready.py removes from it once it has shown them)."""

import json
import os
import sys
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.threads import thread_caps_apply  # noqa: E402

thread_caps_apply()

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from config.celery import WORKER_GROUPS  # noqa: E402


def main(state_file: Path) -> None:
    call_command("migrate", interactive=False, verbosity=1)
    accounts = StringIO()
    call_command("bootstrap", stdout=accounts)
    credentials = [line.strip() for line in accounts.getvalue().splitlines() if "password=" in line]
    # The passwords are shown once, in the ready box; the rest of what bootstrap said, here.
    if credentials:
        print("First-run accounts created: their passwords are in the box once Tandem is ready.")
    else:
        print(accounts.getvalue(), end="")
    call_command("ensure_default_model")
    state = {
        "worker_groups": {
            group: [queue.value for queue in queues] for group, queues in WORKER_GROUPS.items()
        },
        "credentials": credentials,
    }
    # The first-run passwords are in it until the ready box shows them: readable by the owner
    # only, like the secret key (an earlier run's file is narrowed too).
    descriptor = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(json.dumps(state))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
