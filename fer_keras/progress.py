"""A progress line on stderr for long predictions: done / total, rate, ETA.

On a terminal the line is redrawn in place (at most 10 times a second); in a log (not a terminal) a plain line is
printed every `every` items and at the end, so a redirected run still shows that it is alive.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


def format_eta(seconds: float) -> str:
    """`1h02m`, `3m05s` or `42s`."""
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """Reports `what` done out of `total` (None: unknown, e.g. a webcam) in `unit`s.

    Args:
        what: the name shown first (a file, "images").
        total: number of items, or None.
        unit: "frames", "images".
        every: in a log, a line every this many items.
        stream: where to write (default stderr); `enabled=False` writes nothing.
    """

    def __init__(self, what: str, total: Optional[int], unit: str = "frames", every: int = 100,
                 stream: Optional[TextIO] = None, enabled: bool = True):
        self.what, self.total, self.unit, self.every = what, total if total and total > 0 else None, unit, every
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done, self.t0, self._last_draw = 0, time.perf_counter(), 0.0

    def line(self) -> str:
        """The current progress text."""
        dt = max(time.perf_counter() - self.t0, 1e-9)
        rate = self.done / dt
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            return (f"{self.what}: {self.done}/{self.total} {self.unit} ({100.0 * self.done / self.total:.0f}%), "
                    f"{rate:.1f} {self.unit}/s, ETA {format_eta(eta)}")
        return f"{self.what}: {self.done} {self.unit}, {rate:.1f} {self.unit}/s"

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw >= 0.1:
                self.stream.write("\r" + self.line() + "\033[K")
                self.stream.flush()
                self._last_draw = now
        elif self.done % self.every == 0:
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + self.line() + "\033[K\n")
            self.stream.flush()
        elif self.done % self.every != 0:
            print(self.line(), file=self.stream, flush=True)
