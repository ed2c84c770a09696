"""Progress lines on stderr for long phases, e.g. ``[attach grpc seq N=500] 312/500``.

On a terminal the line is rewritten in place; in a log (CI) a line is
written at most every few seconds, so a 1000-container phase neither looks
hung nor floods the log.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress", "note"]


def note(message: str, stream: TextIO | None = None) -> None:
    """One status line on stderr (stdout is kept for the results table)."""
    out = stream or sys.stderr
    out.write(f"bench: {message}\n")
    out.flush()


class Progress:
    """Counts finished steps of one phase; safe to advance from several threads."""

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None, interval: float | None = None) -> None:
        self.label = label
        self.total = total
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval = interval if interval is not None else (0.2 if self._tty else 5.0)
        self._done = 0
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def advance(self, steps: int = 1) -> None:
        with self._lock:
            self._done += steps
            now = time.monotonic()
            if now - self._last >= self._interval and self._done < self.total:
                self._last = now
                self._write(final=False)

    def finish(self, suffix: str = "") -> None:
        with self._lock:
            self._write(final=True, suffix=suffix)

    def _write(self, *, final: bool, suffix: str = "") -> None:
        text = f"[{self.label}] {self._done}/{self.total}{(' ' + suffix) if suffix else ''}"
        if self._tty:
            self._stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
