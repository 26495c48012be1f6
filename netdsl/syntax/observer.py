"""Who hears of what the front end reads: the loader reports each look it takes at the
file system, and the API its reading of standard input, to the observer installed
now, and to no one when none is. The front end knows no cache: ``netdsl check``'s
result cache (``netdsl.cli.checkcache.Recorder``) is an observer that records a run's
observations, so that a later run can make them again and print the recorded output
only where each gives what it gave.

The contract, for an observer (:class:`Observer`):

- ``seen(kind, path, result)`` is called once for each observation, in the order the
  loader makes them, right after it is made and before its result is acted on.
  ``path`` is the path looked at (a ``str`` or ``os.PathLike``), as it was given to
  the call; ``kind`` is one of :data:`KINDS` and says what ``result`` is:

  - ``"stat"``: the ``os.stat_result`` of ``path``, or the ``OSError`` it raised (a
    NUL in the name is reported as ``ENOENT``);
  - ``"read"``: the bytes of the file, all of them (read only when within the size limit);
  - ``"real"``: ``os.path.realpath(path)``, a ``str``, or None where it failed;
  - ``"isdir"``: whether ``path`` (already resolved) is a directory, a ``bool``.

  Any other look at the file system is reported as one of these, or is a bug.
- ``uncacheable()`` says that the call read input that no path names (standard
  input): no record of the observations can vouch for a later run.
- An observer takes what it is given as read-only, and does not raise: an exception
  propagates into the load that reported it.

One observer at a time, for the whole process: :func:`install` it (or use
:func:`observing`), and restore the one it returns when done. Whichever thread
reports, the installed observer hears it: a cache that missed an observation would
answer from a stale record, so the slot is not per thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

# The kinds of observation (see the module's docstring for what each result is).
KINDS = ("stat", "read", "real", "isdir")


class Observer(Protocol):
    """What the loader reports to (the module's docstring states the contract)."""

    def seen(self, kind: str, path: str | os.PathLike[str], result: object) -> None: ...

    def uncacheable(self) -> None: ...


_installed: Observer | None = None


def seen(kind: str, path: str | os.PathLike[str], result: object) -> None:
    """Report that looking at ``path`` in the way ``kind`` names gave ``result`` (to no
    one when no observer is installed).

    >>> seen("read", "a.net", b"x")  # nothing is installed: nothing happens
    """
    if _installed is not None:
        _installed.seen(kind, path, result)


def uncacheable() -> None:
    """Report that the call read something no path names (standard input).

    >>> uncacheable()
    """
    if _installed is not None:
        _installed.uncacheable()


def install(observer: Observer | None) -> Observer | None:
    """Make ``observer`` (None: no one) the one that hears every report from now on,
    and return the one it replaces, to be installed again when done.

    >>> class Log:
    ...     def seen(self, kind, path, result): print(kind, path, result)
    ...     def uncacheable(self): print("stdin")
    >>> before = install(Log())
    >>> seen("isdir", "/", True)
    isdir / True
    >>> install(before) is not None, before
    (True, None)
    """
    global _installed
    previous, _installed = _installed, observer
    return previous


@contextmanager
def observing(observer: Observer | None) -> Iterator[Observer | None]:
    """``observer`` installed for the block, the one before it restored after, also
    when the block raises.

    >>> class Count:
    ...     n = 0
    ...     def seen(self, kind, path, result): self.n += 1
    ...     def uncacheable(self): pass
    >>> with observing(Count()) as count:
    ...     seen("stat", "x.net", FileNotFoundError(2, "gone"))
    >>> count.n, installed()
    (1, None)
    """
    previous = install(observer)
    try:
        yield observer
    finally:
        install(previous)


def installed() -> Observer | None:
    """The observer installed now, or None.

    >>> installed() is None
    True
    """
    return _installed


__all__ = ["KINDS", "Observer", "install", "installed", "observing", "seen", "uncacheable"]
