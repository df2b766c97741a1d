"""`make run`, last step: wait until the app is ready (/readyz: database, broker, a live worker
on every queue), then print the URL, the port and the first-run credentials in one box, with
the time it took since `make run` started. A web server of this run that exits is no longer
waited for: the box says so. Standard library only (no Django start)."""

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# How long to wait for readiness before printing the box with what is still missing.
READY_WAIT_SECONDS = 300


def server_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_ready(url: str, deadline: float, alive=lambda: True) -> dict | None:
    """The /readyz answer once it is 200, or the last answer (None: no answer) at the deadline
    or once ``alive()`` says the web server this run started has exited."""
    last = None
    while time.monotonic() < deadline and alive():
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


def main(
    base_url: str, port: str, state_file: Path, started: float, var_dir: str, server_pid: int
) -> int:
    answer = wait_ready(
        f"{base_url}/readyz",
        time.monotonic() + READY_WAIT_SECONDS,
        alive=lambda: server_alive(server_pid),
    )
    # An answer from a server this run did not start (its own one exited) is no readiness.
    if not server_alive(server_pid):
        answer = {"checks": f"the web server exited: see {var_dir}/log/web.log"}
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
    base, port, state, started, var, pid = sys.argv[1:7]
    sys.exit(main(base, port, Path(state), float(started), var, int(pid)))
