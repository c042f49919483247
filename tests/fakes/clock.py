"""One fake monotonic clock for the tests: time moves only when something sleeps.

Injected as ``clock`` (called) and ``clock.sleep``, so waits, deadlines and retry pauses cost no
real time and no test depends on the machine's speed. ``sleep`` takes a lock: the checks sleep
from several threads at once.
"""

from __future__ import annotations

import threading


class FakeClock:
    """``clock()`` reads the time; ``clock.sleep(s)`` advances it by ``s`` and returns at once."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.t += seconds
