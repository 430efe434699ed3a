"""What the Python suites share for waiting: `wait_for` polls a condition until a deadline, and `free_port` picks
a loopback port for a child that cannot be given port 0.

Import it from a suite with the directory on the path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
"""

from __future__ import annotations

import socket
import threading
import time


def wait_for(what: str, check, timeout: float = 120.0, step: float = 0.25, errors: tuple = ()):
    """Calls `check` until it returns something truthy, which is returned; fails after `timeout` seconds, naming
    `what` and the last result. Exceptions of the `errors` types count as "not yet" (the last one is reported);
    any other propagates. Between two checks it waits `step` seconds at most, never past the deadline."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    last = None
    while True:
        try:
            last = check()
        except errors as e:
            last = e
        else:
            if last:
                return last
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: last {last!r}")
        pause.wait(min(step, left))


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
