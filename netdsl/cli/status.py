"""A one-line status on a terminal, for commands that work for seconds before printing.

``netdsl build`` on VGG-16 takes 5 to 13 s (importing torch, allocating and
initialising 138 M parameters, fvcore's trace) and prints its table only at the
end. On a terminal it says what it is doing, on one line of stderr that each
step overwrites and that is erased before anything else is printed; into a pipe
or a file it writes nothing, so logs and captured output stay as they were.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import TextIO

# Carriage return, then erase to the end of the line (ECMA-48 EL).
_ERASE = "\r\x1b[K"


class StatusLine:
    """Writes ``show``'s text over the previous one, if ``stream`` is a terminal.

    A context manager: the line is erased on leaving, whatever happened inside, so
    an error message or the result starts on a clean line.

    >>> import io
    >>> with StatusLine(io.StringIO()) as status:   # not a terminal: nothing is written
    ...     status.show("building...")
    >>> status.active
    False
    """

    def __init__(self, stream: TextIO | None = None):
        self.stream = sys.stderr if stream is None else stream
        self.active = _is_terminal(self.stream)
        self._shown = False

    def show(self, text: str) -> None:
        """Replace the status with ``text``, cut to the terminal's width (a line that
        wrapped could not be overwritten)."""
        if not self.active:
            return
        width = self._columns() - 1
        if len(text) > width:
            text = text[: max(width - 3, 0)] + "..."
        self._write(_ERASE + text)
        self._shown = True

    def _columns(self) -> int:
        # The status's own terminal: stdout may be a pipe (`netdsl build x.net | less`).
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = shutil.get_terminal_size().columns
        return columns if columns > 0 else 80  # a new pseudo-terminal says 0 until it is sized

    def clear(self) -> None:
        """Erase the status, if one is shown."""
        if self._shown:
            self._write(_ERASE)
            self._shown = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: the status is not worth an error
            self.active = False

    def __enter__(self) -> StatusLine:
        return self

    def __exit__(self, *exc) -> None:
        self.clear()


def _is_terminal(stream) -> bool:
    if os.environ.get("TERM") == "dumb":  # cannot move the cursor (Emacs shell buffers)
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
