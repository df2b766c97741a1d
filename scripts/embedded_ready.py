"""`make run`, last step: wait until the app is ready (/readyz: database, broker, a live worker
on every queue), then print the URL, the port and the first-run credentials in one box, with
the time it took since the script started. Standard library only (no Django start)."""

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# How long to wait for readiness before printing the box with what is still missing.
READY_WAIT_SECONDS = 300


def wait_ready(url: str, deadline: float) -> dict | None:
    """The /readyz answer once it is 200, or the last answer (None: no answer) at the deadline."""
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:  # 503: up, not ready yet
            try:
                last = json.loads(error.read())
            except ValueError:
                last = {"checks": f"HTTP {error.code}"}
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    return last


def box(lines: list[str]) -> str:
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule])


def main(base_url: str, port: str, state_file: Path, started: float, var_dir: str) -> int:
    answer = wait_ready(f"{base_url}/readyz", time.monotonic() + READY_WAIT_SECONDS)
    elapsed = time.time() - started
    state = json.loads(state_file.read_text())
    if state["credentials"]:
        # Shown once, in the box below: no copy of the passwords stays in var/.
        state_file.write_text(json.dumps({**state, "credentials": []}))
    ready = answer is not None and answer.get("status") == "ready"
    lines = [
        f"Tandem is {'ready' if ready else 'NOT ready'} ({elapsed:.1f} s after make run started)",
        "",
        f"Open  {base_url}/",
        f"Port  {port} (set PORT=... to change it)",
        "",
    ]
    if state["credentials"]:
        lines += ["First-run accounts (shown only this once):"]
        lines += [f"  {credential}" for credential in state["credentials"]]
    else:
        lines += [
            "Accounts: created on the first run, credentials shown then.",
            "  Reset one: .venv/bin/python manage.py changepassword admin",
        ]
    lines += [
        "",
        "Workers: " + ", ".join(state["worker_groups"]) + f" (logs in {var_dir}/log/)",
        "Stop: Ctrl+C",
    ]
    if not ready:
        lines += ["", "Still missing: " + json.dumps((answer or {}).get("checks", "no answer"))]
    print(box(lines), flush=True)
    return 0 if ready else 1


if __name__ == "__main__":
    base, port, state, started, var = sys.argv[1:6]
    sys.exit(main(base, port, Path(state), float(started), var))
