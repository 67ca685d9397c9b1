"""A free TCP port on 127.0.0.1, for the servers the tests and the bench start themselves."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nothing listens on right now (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
