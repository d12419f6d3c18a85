"""A guard that makes every network access of a test fail, and records it (ultralytics must never try one)."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator

import pytest


@contextmanager
def network_refused() -> Iterator[list[tuple]]:
    """Every connection or name lookup fails and is recorded."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled by the test")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        patch.setattr(socket, "create_connection", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        yield attempts
