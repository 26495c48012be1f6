"""Writing the files a command is asked to write, under one policy for every command
(``graph -o``, ``export -o``, ``fmt``; ``build --save`` adds its own rule for
checkpoints, netdsl/backend/checkpoint.py):

- **Never replace the spec, or a file it imports**, whatever the flags.
- **Replace an existing file only with consent**: ``--force``, or the file is one
  this netdsl wrote and nobody has changed since. A text netdsl writes to a file
  ends with a stamp line — a comment holding the SHA-256 of everything before
  it — and a file whose stamp still matches its bytes is netdsl's own, unedited.
  A file without a stamp, or edited after it was written, is refused with a
  sentence saying so. (A binary file, an ONNX model, carries no stamp: replacing
  one takes ``--force``.)
- **Write atomically**: a temporary file created beside the target (``O_EXCL``),
  flushed to disk, given the target's permissions, then renamed over it; a
  failure leaves the target as it was and no temporary file behind.
- **Walk only the tree asked for**: a directory's files are those inside it; a
  symbolic link that leads out of it is skipped, never followed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

STAMP = "netdsl-sha256:"
# What a stamp line looks like in each kind of text netdsl writes: a comment of that format.
COMMENTS = {"python": "# {}", "mermaid": "%% {}", "dot": "// {}", "svg": "<!-- {} -->"}
# Larger files are not read to look for a stamp: netdsl writes none that big.
MAX_STAMPED_BYTES = 64 * 2**20


class Refused(Exception):
    """A write the policy refuses; the message says why and what to do."""


def stamp(text: str, form: str) -> str:
    """``text`` with a last line that records its hash, as a comment of ``form``
    (a key of :data:`COMMENTS`): what :func:`is_own` recognises later.

    >>> s = stamp("x = 1\\n", "python"); s.splitlines()[-1][:16]
    '# netdsl-sha256:'
    >>> is_own(s.encode())
    True
    >>> is_own(s.replace("1", "2").encode())  # edited since
    False
    """
    if not text.endswith("\n"):
        text += "\n"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text + COMMENTS[form].format(f"{STAMP} {digest}") + "\n"


def is_own(data: bytes) -> bool:
    """Whether ``data`` ends with a stamp whose hash is that of the bytes before it:
    a file this netdsl wrote that nobody has changed since."""
    body, sep, last = data.rstrip(b"\n").rpartition(b"\n")
    if not sep:
        return False
    marker = STAMP.encode()
    at = last.find(marker)
    if at < 0:
        return False
    digest = last[at + len(marker):].strip().split(b" ", 1)[0].decode("ascii", "replace")
    return hashlib.sha256(body + b"\n").hexdigest() == digest


def files_read(compile_fn):
    """``compile_fn()``'s result and the paths of every file the front end read for it
    (the spec and each file it imports), heard through the loader's observer.

    >>> import netdsl
    >>> net, read = files_read(lambda: netdsl.compile("specs/resnet50.net"))
    >>> sorted(p.name for p in read)
    ['resnet.net', 'resnet50.net']
    """
    from ..syntax import observer

    class Reads:
        def __init__(self) -> None:
            self.paths: list[Path] = []

        def seen(self, kind, path, result) -> None:
            if kind == "read":
                self.paths.append(Path(path))

        def uncacheable(self) -> None:
            pass

    reads = Reads()
    previous = observer.installed()

    class Both:  # the check cache, if it records, hears everything as before
        def seen(self, kind, path, result) -> None:
            reads.seen(kind, path, result)
            if previous is not None:
                previous.seen(kind, path, result)

        def uncacheable(self) -> None:
            if previous is not None:
                previous.uncacheable()

    with observer.observing(Both()):
        result = compile_fn()
    return result, reads.paths


def check_target(path: str, *, force: bool, spec: object = None, imports: Iterable[os.PathLike] = (),
                 flag: str = "-o") -> Path:
    """Where ``flag path`` may write, checked before anything is written: not a
    directory or special file, in a directory that exists, not the ``spec`` or one of
    the files it ``imports``, and, where a file is there already, one netdsl wrote
    and nobody changed since, or ``force``. Raises :class:`Refused`."""
    if not path:
        raise Refused(f"{flag} needs a file name")
    target = Path(os.path.realpath(path))
    try:
        st = target.stat()
    except FileNotFoundError:
        if not target.parent.is_dir():
            raise Refused(f"{flag} {path}: the directory {Path(path).parent} does not exist") from None
        return target
    except OSError as e:
        raise Refused(f"{flag} {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise Refused(f"{flag} {path}: is a directory; give a file name inside it")
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"{flag} {path}: is not a regular file; give the name of a file")
    for what, p in [("the spec", spec)] + [("a file the spec imports", q) for q in imports]:
        if isinstance(p, (str, os.PathLike)) and _same(target, p):
            raise Refused(f"{flag} {path}: is {what}; netdsl never writes over a spec, whatever the "
                          "flags (give another file name)")
    if force:
        return target
    if st.st_size > MAX_STAMPED_BYTES or not _own_file(target):
        raise Refused(f"{flag} {path}: the file exists and netdsl did not write it, or it was changed "
                      "since; not replacing it (--force replaces it)")
    return target


def _same(a: Path, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _own_file(target: Path) -> bool:
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        return is_own(f.read(MAX_STAMPED_BYTES + 1))


def write_atomic(target: Path, data: bytes, shown: str, flag: str = "-o") -> None:
    """Write ``data`` to ``target`` atomically: a temporary file beside it, flushed, then
    moved over it with the permissions it had; on failure ``target`` is left as it
    was. Raises :class:`Refused` saying what happened."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise Refused(f"{flag} {shown}: cannot write in {Path(shown).parent}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode(target))
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if not isinstance(e, OSError):
            raise
        raise Refused(f"{flag} {shown}: writing failed ({e.strerror or e}); the file was "
                      f"{'left as it was' if target.exists() else 'not created'}") from None


def _mode(target: Path) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def replace_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, keeping its permissions: for a
    file the user named (``fmt``). A symbolic link is followed, so the link stays a
    link. Raises OSError, with ``path`` unchanged and no temporary file left behind.

    >>> p = Path(tempfile.mkdtemp()) / "a.net"
    >>> replace_text(p, "network n() {}\\n"); p.read_text()
    'network n() {}\\n'
    """
    target = Path(os.path.realpath(path))
    try:
        write_atomic(target, text.encode("utf-8"), str(path))
    except Refused as e:
        raise OSError(str(e)) from None


def files_under(root: Path, pattern: str = "*.net") -> tuple[list[Path], list[Path]]:
    """The files matching ``pattern`` in the tree under ``root``, and the symbolic links
    among them that lead out of it (skipped, never followed).

    >>> d = Path(tempfile.mkdtemp()); _ = (d / "a.net").write_text(""); (d / "b.net").symlink_to("/etc/hostname")
    >>> inside, outside = files_under(d); [p.name for p in inside], [p.name for p in outside]
    (['a.net'], ['b.net'])
    """
    base = Path(os.path.realpath(root))
    inside, outside = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not p.match(pattern):
                continue
            real = Path(os.path.realpath(p))
            if real != base and base not in real.parents:
                outside.append(p)
            elif real.is_file():
                inside.append(p)
    return inside, outside
