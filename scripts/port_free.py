"""`make run`, before anything starts: exit 1, saying why, when HOST:PORT is taken (another
Tandem, or any other server), so that the ready box never speaks of a server this run did not
start, and no first-run passwords are made only to be lost. Standard library only."""

import socket
import sys


def port_problem(host: str, port: int) -> str | None:
    """Why the web server could not listen on ``host``:``port`` (None: it can), found by
    binding it as the server will (address reuse on, as Django's server sets it)."""
    host = host.strip("[]")  # an IPv6 address as runserver takes it: [::1]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return (
                f"Port {port} on {host} is not free ({error.strerror}): another Tandem or "
                "another server is listening there. Stop it, or set PORT=... to use another port."
            )
    return None


if __name__ == "__main__":
    problem = port_problem(sys.argv[1], int(sys.argv[2]))
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(1)
