"""The result cache of ``netdsl check``: a repeated check of unchanged inputs
prints what the first one printed, and exits with its status, without importing
the compiler.

Why: a cold ``check`` pays ~200 ms of imports (pydantic and the IR's model
classes, Lark, the checker) for a few milliseconds of work, while an editor's
save hook, ``make`` or a pre-commit run checks the same unchanged specs again
and again. Like ruff's and mypy's caches, this one makes that repetition cost
little more than starting Python. This module imports only what Python has
already loaded at startup (``os``, ``sys``, ``marshal``, ``_blake2``), so a hit
costs the interpreter, argument matching and hashing the inputs.

It never answers from stale inputs. An entry is found by a key made of
everything the output can depend on besides the files a spec reads:

- this netdsl's version and a hash of the bytes of every file of the package
  (its Python source, ``grammar.lark``, the standard library specs);
- the Python running it (version, executable, ``sys.path``, ``sys.flags``,
  ``-W``/``-X`` options);
- the exact argument list, the working directory;
- the environment variables that can change the output or what runs (`ENV`);
- for stdout and stderr: whether each is a terminal, its encoding and error handler.

The entry then holds each observation the run made of the file system, in
order — the content hash of every file read (the spec and each import), the
stat of each path looked at (so a file that appears in an import directory
searched earlier is noticed), each resolved symlink, each directory test —
and the stat of the dependencies' modules (a ``pip install -U lark`` shows).
The loader reports each observation to the front end's observer
(:mod:`netdsl.syntax.observer`, whose contract says what each kind records), and a
:class:`Recorder` is that observer while it records a run; the front end does not
know this module. A hit repeats every observation and replays only if each gives
what it gave then; otherwise the check runs in full and its entry is replaced.

Only complete runs are kept: exit 0, or 1 with diagnostics. Usage errors,
internal errors, interruptions and ``--help`` are never cached. ``build`` and
the other commands do not use the cache: they need the model itself, which a
cache of printed output cannot give.

Where: entries ``<hash>.check`` in the cache directory of :mod:`netdsl.cachedir`,
which says how its files are trusted: the directory must be this user's and
private, no link in it is followed, and every entry is verified with this user's
key before a byte of it is decoded, so an entry planted by someone else is a miss.
``NETDSL_CACHE_DIR=""`` turns it off, and ``check --no-cache`` skips it for one
run. Entries are ``marshal`` data of strings and numbers only (never code, never a
pickle), decoded only once verified; one that is unreadable, truncated, too large
or of another format is a miss. Besides, an entry is used only if it records the
reading of at least one spec file: a run that read nothing is never replayed.
At most :data:`MAX_ENTRIES` entries and :data:`MAX_BYTES` in all are kept, the
least recently used are removed first.
"""

from __future__ import annotations

import marshal
import os
import sys
from typing import TYPE_CHECKING

from ..cachedir import CacheDir, open_cache

if TYPE_CHECKING:
    from ..syntax.observer import Observer

try:  # hashlib would load OpenSSL (~2 ms) for a hash it then takes from _blake2 anyway
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

FORMAT = 1
MAX_ENTRIES = 256
MAX_BYTES = 32 * 2**20
MAX_ENTRY_BYTES = 2**20  # a larger output (a huge --emit-ir) is not kept

# Environment variables that can change what `check` prints, or which code runs
# to print it: netdsl's own, Python's (PYTHONPATH, PYTHONHASHSEED, PYTHONIOENCODING,
# PYTHONWARNINGS, ...), pydantic's (plugins), the locale, and the terminal's.
ENV_PREFIXES = ("NETDSL_", "PYTHON", "PYDANTIC", "LC_")
ENV_NAMES = ("LANG", "LANGUAGE", "TERM", "NO_COLOR", "FORCE_COLOR", "CLICOLOR", "CLICOLOR_FORCE",
             "COLUMNS", "LINES", "HOME", "XDG_CACHE_HOME", "VIRTUAL_ENV")

def _summary(kind: str, result):
    if kind == "read":
        return blake2b(result, digest_size=20).hexdigest()
    if kind == "stat":
        if isinstance(result, BaseException):
            return getattr(result, "errno", None) or -1
        # What the loader reads of a stat: the file's type, and its size (the size limit).
        return (result.st_mode & 0o170000, result.st_size)
    return result  # "real": a str or None; "isdir": a bool


def observe(kind: str, path: str):
    """Look at ``path`` again as the loader did when it reported ``kind`` (to
    :meth:`Recorder.seen`), giving the same summary.

    >>> observe("isdir", "/"), observe("read", "/nonexistent/x.net")
    (True, None)
    """
    if kind == "read":
        try:
            with open(path, "rb") as f:
                return _summary(kind, f.read())
        except (OSError, ValueError):
            return None
    if kind == "stat":
        try:
            return _summary(kind, os.stat(path))
        except OSError as e:
            return _summary(kind, e)
        except ValueError:  # a NUL in the name: the loader reads that as "no such file"
            return 2
    if kind == "real":
        try:
            return os.path.realpath(path)
        except (OSError, ValueError):
            return None
    if kind == "isdir":
        return os.path.isdir(path)
    return object()  # an unknown kind (another format): never equal


def _package_hash(root: str | None = None) -> str:
    """A hash of every file of the netdsl package (names and bytes), bytecode aside."""
    root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = blake2b(digest_size=20)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                data = f.read()
            h.update(f"{os.path.relpath(path, root)}\0{len(data)}\0".encode("utf-8", "surrogateescape"))
            h.update(data)
    return h.hexdigest()


def _stream(s):
    if s is None:
        return None
    return (getattr(s, "encoding", None), getattr(s, "errors", None), bool(s.isatty()))


def key(argv: list[str]) -> str:
    """Everything besides the files read that ``netdsl check`` with ``argv`` depends on."""
    from .. import __version__

    env = sorted((k, v) for k, v in os.environ.items()
                 if k.startswith(ENV_PREFIXES) or k in ENV_NAMES)
    return repr((FORMAT, __version__, _package_hash(), sys.version, sys.executable, sys.path,
                 tuple(sys.flags), sys.warnoptions, sorted(sys._xoptions.items()),
                 list(argv), os.getcwd(), env, _stream(sys.stdout), _stream(sys.stderr)))


def _entry_name(k: str) -> str:
    return blake2b(k.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest() + ".check"


def _valid(entry, k: str) -> bool:
    """Whether a decoded entry has the shape :meth:`Recorder.finish` gives one, for key ``k``."""
    if type(entry) is not tuple or len(entry) != 6:
        return False
    fmt, stored_key, trace, deps, out, status = entry
    return (fmt == FORMAT and stored_key == k and status in (0, 1) and type(trace) is list
            and all(type(t) is tuple and len(t) == 3 and type(t[1]) is str for t in trace)
            and any(t[0] == "read" for t in trace)  # it read a spec: it checked something
            and type(deps) is list and all(type(d) is tuple and len(d) == 2 for d in deps)
            and type(out) is list
            and all(type(o) is tuple and len(o) == 2 and o[0] in (1, 2)
                    and (o[1] is None or type(o[1]) is str) for o in out))


def replay(argv: list[str]) -> int | None:
    """When ``argv`` is a ``check`` with an entry whose every observation holds,
    print its output as it was printed and return its exit status; else None (run
    it). Any failure to read the cache is a miss, never an error."""
    if not argv or argv[0] != "check" or "--no-cache" in argv or "-" in argv:
        return None  # `-`: the spec is on stdin, which no entry can vouch for
    try:
        cache = open_cache()
        if cache is None:
            return None
        k = key(argv)
        name = _entry_name(k)
        data = cache.read(name, MAX_ENTRY_BYTES)
        if data is None:
            return None
        entry = marshal.loads(data)
        if not _valid(entry, k):
            return None
        _, _, trace, deps, out, status = entry
        for kind, p, result in trace:
            if observe(kind, p) != result:
                return None
        for p, result in deps:
            if _dep_stat(p) != result:
                return None
        chunks = [({1: sys.stdout, 2: sys.stderr}[fd], text) for fd, text in out]
    except Exception:  # a corrupt entry, an unreadable directory, a cwd that is gone: a miss
        return None
    for stream, text in chunks:
        if text is None:
            stream.flush()
        else:
            stream.write(text)
    cache.touch(name)  # used now: the last to be pruned
    return status


def _dep_stat(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _dependencies() -> list[tuple[str, tuple | None]]:
    """The stat of each top-level module loaded from outside the standard library and
    netdsl (lark, pydantic, ...): an upgrade replaces those files."""
    stdlib = os.path.dirname(os.__file__)
    own = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = []
    for name, module in list(sys.modules.items()):
        f = getattr(module, "__file__", None)
        if "." in name or not isinstance(f, str):
            continue
        f = os.path.abspath(f)
        if f.startswith(own + os.sep) or (f.startswith(stdlib + os.sep) and
                                          os.sep + "site-packages" + os.sep not in f[len(stdlib):]):
            continue
        out.append((f, _dep_stat(f)))
    return sorted(out)


class _Tee:
    """A text stream that records what is written to it, in order with the other one's."""

    _SAFE = frozenset({"encoding", "errors", "isatty", "closed", "name", "mode", "line_buffering",
                       "newlines", "writable", "readable", "seekable", "write_through"})

    def __init__(self, stream, fd: int, recorder: Recorder):
        self._stream, self._fd, self._recorder = stream, fd, recorder

    def write(self, text):
        n = self._stream.write(text)
        self._recorder.out.append((self._fd, str(text)))
        return n

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        self._stream.flush()
        self._recorder.out.append((self._fd, None))

    def __getattr__(self, name):
        # Anything that could reach the file another way (`buffer`, `fileno`) would
        # print what the record misses: such a run is not kept.
        if name not in self._SAFE:
            self._recorder.tainted = True
        return getattr(self._stream, name)


class Recorder:
    """Records one ``check`` run: what it prints, and what it observes of the files as
    the front end's observer (:mod:`netdsl.syntax.observer`), installed from
    :meth:`start` to :meth:`finish`."""

    def __init__(self, argv: list[str], cache: CacheDir, k: str):
        self.argv, self.cache, self.key = list(argv), cache, k
        self.out: list[tuple[int, str | None]] = []
        self.trace: list[tuple[str, str, object]] = []
        self.tainted = False
        self._saved = (sys.stdout, sys.stderr)
        self._before: Observer | None = None

    def seen(self, kind: str, path: str | os.PathLike[str], result: object) -> None:
        """Record that looking at ``path`` in the way ``kind`` names gave ``result``, for
        :func:`observe` to repeat on a later hit (the observer's contract says what
        each kind's result is).

        >>> r = Recorder([], None, "")
        >>> r.seen("isdir", "/", True)
        >>> r.trace
        [('isdir', '/', True)]
        """
        self.trace.append((kind, os.fspath(path), _summary(kind, result)))

    def uncacheable(self) -> None:
        """The run read something a later hit cannot look at again (standard input): it
        is not kept."""
        self.tainted = True

    def start(self) -> Recorder:
        from ..syntax import observer  # here: a hit, which records nothing, need not import it

        self._before = observer.install(self)
        if sys.stdout is not None:
            sys.stdout = _Tee(sys.stdout, 1, self)
        if sys.stderr is not None:
            sys.stderr = _Tee(sys.stderr, 2, self)
        return self

    def finish(self, status: int | None) -> None:
        """Stop recording; keep the run when it completed (exit 0, or 1 with diagnostics)."""
        from ..syntax import observer

        observer.install(self._before)
        sys.stdout, sys.stderr = self._saved
        if status not in (0, 1) or self.tainted:
            return
        out: list[tuple[int, str | None]] = []
        for fd, text in self.out:  # print() writes the text and the newline apart: join them
            if out and text and out[-1][0] == fd and out[-1][1] is not None:
                out[-1] = (fd, out[-1][1] + text)
            elif text != "":
                out.append((fd, text))
        try:
            data = marshal.dumps((FORMAT, self.key, self.trace, _dependencies(), out, status))
            if len(data) <= MAX_ENTRY_BYTES and self.cache.write(_entry_name(self.key), data):
                _prune(self.cache)
        except Exception:  # a full disk, a read-only directory: no cache, never an error
            pass


def record(argv: list[str]) -> Recorder | None:
    """Start recording a ``check`` run, or None where there is no cache (or no key:
    a working directory that is gone)."""
    try:
        cache = open_cache()
        return None if cache is None else Recorder(argv, cache, key(argv)).start()
    except Exception:
        return None


def _prune(cache: CacheDir) -> None:
    """Remove the least recently used entries beyond MAX_ENTRIES or MAX_BYTES."""
    entries = cache.entries(".check")
    total = sum(size for _, size, _ in entries)
    if len(entries) <= MAX_ENTRIES and total <= MAX_BYTES:
        return
    entries.sort(reverse=True)  # newest first
    keep, size = 0, 0
    for _, s, _ in entries:
        # Prune to three quarters, so that not every later store lists the directory again.
        if keep >= MAX_ENTRIES * 3 // 4 or size + s > MAX_BYTES * 3 // 4:
            break
        keep, size = keep + 1, size + s
    for _, _, name in entries[keep:]:
        cache.remove(name)
