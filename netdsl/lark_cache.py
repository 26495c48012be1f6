"""Where the parser's LALR tables are cached between processes.

Building the tables from ``grammar.lark`` takes about a quarter of a second, in
every process; loading them back takes a few milliseconds. Lark caches them
itself (``Lark(cache=path)``): the file starts with a hash of the grammar, the
options and Lark's version, a stale or unreadable file is ignored and rebuilt,
and a file that cannot be written only means the next process builds again. So
the grammar file stays the only source, an edit to it takes effect at once, and
a read-only install works, only slower.

Why not a standalone parser generated at build time: the package is installed
editable while the grammar changes, and a generated module beside the grammar
would be a second source that goes stale silently.

The cache is a pickle, so it is only read from a directory of the user's own:
``$NETDSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/netdsl`` or ``~/.cache/netdsl``, else
the package's own ``__pycache__`` (whoever can write there can change the code
anyway). ``NETDSL_CACHE_DIR=""`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path


def cache_dirs() -> list[Path]:
    """The directories tried for the cache, in order.

    >>> import os; os.environ["NETDSL_CACHE_DIR"] = "/tmp/x"
    >>> str(cache_dirs()[0])
    '/tmp/x'
    >>> os.environ["NETDSL_CACHE_DIR"] = ""; cache_dirs()
    []
    >>> del os.environ["NETDSL_CACHE_DIR"]
    """
    env = os.environ.get("NETDSL_CACHE_DIR")
    if env is not None:
        return [Path(env)] if env else []
    dirs = []
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        dirs.append(Path(xdg) / "netdsl")
    else:
        home = os.path.expanduser("~")
        if home != "~":
            dirs.append(Path(home) / ".cache" / "netdsl")
    dirs.append(Path(__file__).parent / "__pycache__")
    return dirs


def cache_file(grammar: str, options: dict) -> str | bool:
    """The path of the tables of ``grammar`` built with ``options`` (named by their
    hash, so checkouts with different grammars share a directory without fighting),
    or False where no directory can be written.

    >>> import os; os.environ["NETDSL_CACHE_DIR"] = ""
    >>> cache_file("start: 'a'", {})
    False
    >>> del os.environ["NETDSL_CACHE_DIR"]
    """
    import lark

    key = hashlib.sha256(
        f"{grammar}\0{sorted(options.items())!r}\0{lark.__version__}\0{sys.version_info[:2]}"
        .encode()).hexdigest()[:20]
    for d in cache_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK | os.X_OK):
            return str(d / f"lark-{key}.pickle")
        path = d / f"lark-{key}.pickle"
        if path.is_file():  # a read-only install whose cache was written when it was built
            return str(path)
    return False
