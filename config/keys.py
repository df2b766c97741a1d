"""Secrets an install makes for itself, once, in files nobody commits (under ``VAR_DIR``)."""

import os
import secrets
import time
from pathlib import Path


def secret_file_read_or_create(path: Path) -> str:
    """The secret stored in ``path``; a new random one (readable by its owner only) if none.

    Processes starting together (web and worker) agree: the file is created exclusively, and
    whoever loses the race reads the winner's secret.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(100):
            secret = path.read_text().strip()
            if secret:
                return secret
            # The winner created the file and has not written it yet.
            time.sleep(0.05)
        raise RuntimeError(f"{path} exists but is empty: delete it to make a new secret") from None
    secret = secrets.token_urlsafe(48)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
    return secret
