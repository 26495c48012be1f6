"""Replacing a text file so that a failure leaves the old one as it was."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def replace_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path``: into a temporary file in the same
    directory, flushed to disk, then moved over ``path`` with its permissions.
    A symbolic link is followed, so the link stays a link. Raises OSError, with
    ``path`` unchanged and no temporary file left behind.

    >>> p = Path(tempfile.mkdtemp()) / "a.net"
    >>> replace_text(p, "network n() {}\\n"); p.read_text()
    'network n() {}\\n'
    """
    target = Path(os.path.realpath(path))
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
