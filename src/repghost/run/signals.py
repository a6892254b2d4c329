"""Stopping a long run cleanly: the first Ctrl-C or SIGTERM asks the loop to stop at its next step
and save a resumable checkpoint; a second aborts at once."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

log = logging.getLogger("repghost.run")


class StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM (what torchrun and schedulers send) asks the loop to stop at the
    next step and save a resumable checkpoint; a second signal aborts at once (KeyboardInterrupt).

    The first signal is acknowledged with one line, ``interrupt: ...`` plus ``note`` (e.g. how to
    resume), through ``announce`` (default: a warning on the ``repghost.run`` logger). A terminal's
    Ctrl-C reaches the whole process group, data-loader workers included; they inherit this handler
    when forked and ignore the signal (the loop's process stops them), so the line is printed once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, note: str = "", announce: Callable[[str], None] | None = None):
        self.requested = False
        self.note, self.announce = note, announce or log.warning
        self._old = {}
        self._pid = os.getpid()

    def __enter__(self):
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:  # a forked data-loader worker
            return
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.announce("interrupt: saving a resumable checkpoint at the next step, then stopping (Ctrl-C again to "
                      "abort)" + (f"; {self.note}" if self.note else ""))

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

