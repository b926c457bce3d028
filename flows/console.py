"""A subprocess's console output as log lines, without the progress bars' carriage-return updates.

A tqdm bar writing to a pipe redraws itself with ``\\r<bar>`` every ``TQDM_MININTERVAL`` seconds and
ends its line with ``\\n`` (or, ``leave=False``, clears itself with ``\\r<spaces>\\r``). Split at every
``\\r``, one training run's bars were 468 of its 561 Prefect log lines. :class:`ConsoleLines` keeps what
a terminal would end up showing instead: a line as it is when its ``\\n`` comes (a bar's final state),
a bar's last state when it is cleared, and, for a bar that runs long, its state at most once every
``every`` seconds (a heartbeat: a long training stays visible in the log). The bars themselves are
untouched: ``dvc repro`` in a terminal draws them as before.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

#: a long-running bar's state goes to the log at most this often (the rest of its updates are dropped)
PROGRESS_EVERY_S = 300.0

_BREAKS = re.compile(r"(\r\n|\r|\n)")


class ConsoleLines:
    """Feed it text as it comes (any chunks); it returns the lines to log."""

    def __init__(self, every: float = PROGRESS_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.clock = every, clock
        self._text = ""  # the current line since its last \r
        self._bar: str | None = None  # the last state of a bar on this line, overwritten by a \r, not yet logged
        self._last = clock()  # when a bar's state was last logged as a heartbeat

    def feed(self, chunk: str) -> list[str]:
        out: list[str] = []
        for piece in _BREAKS.split(chunk):
            if piece in ("\n", "\r\n"):
                out += self._end_line()
            elif piece == "\r":
                out += self._overwrite()
            else:
                self._text += piece
        return out

    def close(self) -> list[str]:
        """What is left when the output ends (a last line without its newline, a bar's state)."""
        return self._end_line()

    def _overwrite(self) -> list[str]:
        text, self._text = self._text.rstrip(), ""
        if not text.strip():  # a cleared line (tqdm's leave=False, or tqdm.write making room): the bar's last state
            bar, self._bar = self._bar, None
            return [bar] if bar else []
        self._bar = text
        now = self.clock()
        if now - self._last >= self.every:
            self._last, self._bar = now, None
            return [text]
        return []

    def _end_line(self) -> list[str]:
        text, self._text = self._text.rstrip(), ""
        bar, self._bar = self._bar, None
        if text.strip():
            return [text]  # the line as it ends: a bar's final state replaces its updates
        return [bar] if bar else []
