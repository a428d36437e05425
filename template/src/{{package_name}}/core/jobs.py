"""Work done after the response, in one background thread per process, from a bounded queue.

For work whose duration must not show in the response time (a password-reset request must
take as long for an unknown address as for a known one). A full queue drops the job with a log
line: the callers are throttled, so that means a flood, and the answer is the same anyway.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from .errors import ServiceUnavailable

log = logging.getLogger(__name__)


class Background:
    """A single worker thread, started on first use, running jobs in order."""

    def __init__(self, max_pending: int = 100) -> None:
        self._queue: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue(
            max_pending
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        """Run `job(*args)` soon, in the background; never blocks."""
        self._start()
        try:
            self._queue.put_nowait((job, args))
        except queue.Full:
            log.error("Background queue full: dropped %s", getattr(job, "__name__", job))

    def close(self, timeout: float) -> None:
        """Run what is queued (for at most `timeout` seconds), then stop."""
        thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="background", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            job, args = item
            try:
                job(*args)
            except ServiceUnavailable:  # the outage is logged once, by the database's health
                log.warning("Background job %s skipped: no database", getattr(job, "__name__", job))
            except Exception:
                log.exception("Background job %s failed", getattr(job, "__name__", job))
