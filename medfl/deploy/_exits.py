"""What a Flower process's exit code means, in words a user can act on."""

from __future__ import annotations

import signal

# Flower's configuration errors (flwr.supercore.exit.ExitCode): not worth a retry.
_FLOWER = {
    0: "finished",
    1: "stopped by SIGINT",
    3: "stopped by SIGTERM",
    104: "the server's arguments are invalid",
    302: "the site's private key is not a valid elliptic-curve key",
    303: "site authentication needs TLS, but TLS is off",
    305: (
        "it could not connect to the server: the server refused the site (its key is not "
        "registered, or a site already connected with that key) or the server's "
        "certificate was not trusted or not reachable"
    ),
    600: "an address is invalid",
    603: "the root certificates cannot be read",
    604: "a file path is invalid",
    605: "the server's TLS certificate or key is invalid",
    607: "medfl's Flower app could not be imported",
}


# Words in a process's last log lines that say more precisely what went wrong.
_HINTS = {
    "CERTIFICATE_VERIFY_FAILED": (
        "the server's TLS certificate is not signed by the CA this process trusts "
        "(its ca.pem is not the federation's)"
    ),
    "WRONG_VERSION_NUMBER": (
        "TLS is on at one end and off (--insecure) at the other, or --server is not the "
        "federation server's port"
    ),
}


def describe_exit(code: int | None, last_lines: list[str] | None = None) -> str:
    """The exit code in words; the log's last lines sharpen a vague one."""
    for marker, hint in _HINTS.items():
        if code and any(marker in line for line in last_lines or []):
            return hint
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return _FLOWER.get(code, "an unexpected failure")
