"""The progress bar: one line on stderr, redrawn in place, only when stderr is a terminal.

Scripts and CI read stdout (the table or the JSON) and see no progress noise: when stderr is not
a terminal, or with --no-progress, nothing is drawn.
"""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 24


class ProgressBar:
    def __init__(self, duration: float, requests: int | None, *, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.duration = duration
        self.requests = requests
        self._drawn = False

    def update(self, elapsed: float, answered: int, errors: int) -> None:
        if not self.enabled:
            return
        share = elapsed / self.duration if self.duration else 0.0
        if self.requests:
            share = max(share, (answered + errors) / self.requests)
        share = min(max(share, 0.0), 1.0)
        filled = int(share * WIDTH)
        rate = answered / elapsed if elapsed > 0 else 0.0
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (WIDTH - filled)}] {elapsed:5.1f}/{self.duration:g} s "
            f"{answered:>10,} answers {rate:>9,.0f}/s {errors:>6,} errors ")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * 90 + "\r")
            self.stream.flush()
            self._drawn = False
