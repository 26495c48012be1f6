"""netdsl's cache directory: a trust boundary, and the only code that touches it.

Two things are kept between processes: the parser's tables (``parser._lark``) and
the results of ``netdsl check`` (``checkcache``). A later process reads them back,
so whoever can put a file in the directory could otherwise run code (a pickle),
make netdsl overwrite a file elsewhere (a symlink in the directory's place), or
make ``check`` print "ok" for a spec with errors (a planted result). The rules:

- **Where.** ``$NETDSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/netdsl``, else
  ``~/.cache/netdsl``. ``NETDSL_CACHE_DIR=""`` turns caching off.
- **Whose.** A new directory is made 0700. A directory not owned by this user, or
  writable by its group or by others, is refused: netdsl then runs without a cache
  and says so once on stderr, as ssh refuses a ``~/.ssh`` others can write.
- **No links followed.** The directory is opened once and checked through its
  descriptor; every file in it is opened relative to that descriptor with
  ``O_NOFOLLOW`` and must be a regular file of this user's, so a path swapped or a
  symlink planted after the check is never followed. New files are made under a
  random name with ``O_EXCL`` and renamed into place: a reader sees the old file
  or the new one, never a torn one, and nothing outside the directory is written.
- **Authenticated before decoded.** Each file begins with a MAC: keyed BLAKE2b over
  its name and contents. The key is random, made for this user in the file ``key``
  (0600), and bound to that file's device and inode, so a copy of the directory (a
  restored CI cache, a team share) holds nothing this netdsl will read. A file is
  size-checked, then verified, and only then decoded; one that fails either is a
  miss. What is decoded is ``marshal`` data of plain values: never a pickle, never
  code.

This module imports only what Python loads at startup: the check cache answers
a hit without importing the compiler, and this is on its path.

>>> import os, tempfile
>>> os.environ["NETDSL_CACHE_DIR"] = tempfile.mkdtemp()
>>> c = open_cache(fresh=True)
>>> c.write("demo.bin", b"hello")
True
>>> c.read("demo.bin", limit=100)
b'hello'
>>> c.read("demo.bin", limit=3) is None  # over the size given: not read
True
>>> del os.environ["NETDSL_CACHE_DIR"]
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable

try:  # hashlib would load OpenSSL (~2 ms) for a hash it then takes from _blake2 anyway
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b
_same: Callable[[bytes, bytes], bool]  # a comparison in constant time
try:
    from _operator import _compare_digest as _same
except ImportError:  # pragma: no cover
    from hmac import compare_digest as _same

MAGIC = b"netdslC1"
_MAC = 32
_KEY = "key"
_KEY_BYTES = 32
# What the platform must offer for the rules above; without it (Windows) there is no cache.
_SUPPORTED = (hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY")
              and os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd
              and os.scandir in os.supports_fd)


def location() -> str | None:
    """The cache directory's path, or None when caching is off or there is no home.

    >>> import os; os.environ["NETDSL_CACHE_DIR"] = "/tmp/x"; location()
    '/tmp/x'
    >>> os.environ["NETDSL_CACHE_DIR"] = ""; print(location())
    None
    >>> del os.environ["NETDSL_CACHE_DIR"]
    """
    env = os.environ.get("NETDSL_CACHE_DIR")
    if env is not None:
        return env or None
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return os.path.join(xdg, "netdsl")
    home = os.path.expanduser("~")
    return None if home == "~" else os.path.join(home, ".cache", "netdsl")


class CacheDir:
    """An opened, checked cache directory (see the module's docstring for the rules)."""

    def __init__(self, fd: int, path: str, key: bytes):
        self.fd, self.path, self._key = fd, path, key

    def _mac(self, name: str, data: bytes) -> bytes:
        h = blake2b(name.encode("utf-8", "surrogateescape") + b"\0", key=self._key, digest_size=_MAC)
        h.update(data)
        return h.digest()

    def read(self, name: str, limit: int) -> bytes | None:
        """The contents of ``name`` as :meth:`write` stored them, or None: missing,
        over ``limit`` bytes, not a regular file of this user's, or not verified."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=self.fd)
        except (OSError, ValueError):
            return None
        try:
            st = os.fstat(fd)
            size = st.st_size
            if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid()
                    or size > limit + len(MAGIC) + _MAC or size < len(MAGIC) + _MAC):
                return None
            chunks, left = [], size
            while left > 0:
                chunk = os.read(fd, left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            raw = b"".join(chunks)
        except OSError:
            return None
        finally:
            os.close(fd)
        head, mac, data = raw[:len(MAGIC)], raw[len(MAGIC):len(MAGIC) + _MAC], raw[len(MAGIC) + _MAC:]
        if head != MAGIC or len(data) > limit or not _same(mac, self._mac(name, data)):
            return None
        return data

    def write(self, name: str, data: bytes) -> bool:
        """Store ``data`` under ``name`` atomically; False where it could not be written.
        No fsync: a cache needs no durability, and a torn file is a miss."""
        return _put(self.fd, name, MAGIC + self._mac(name, data) + data)

    def entries(self, suffix: str) -> list[tuple[int, int, str]]:
        """(mtime_ns, size, name) of each regular file whose name ends with ``suffix``."""
        out = []
        with os.scandir(self.fd) as it:
            for e in it:
                if e.name.endswith(suffix):
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        out.append((st.st_mtime_ns, st.st_size, e.name))
        return out

    def remove(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except OSError:
            pass

    def touch(self, name: str) -> None:
        """Mark ``name`` as used now (the last to be pruned)."""
        try:
            os.utime(name, dir_fd=self.fd, follow_symlinks=False)
        except (OSError, NotImplementedError):
            pass


def _put(dir_fd: int, name: str, data: bytes, replace: bool = True) -> bool:
    """Write ``data`` to a new file with a random name, then move it to ``name`` (or,
    with ``replace`` False, link it there only if ``name`` does not exist yet)."""
    tmp = f".{name}.{os.urandom(8).hex()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    except (OSError, ValueError):
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if replace:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        else:
            os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        return True
    except OSError:
        return False
    finally:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass


_opened: tuple[str | None, CacheDir | None] | None = None
_warned: set[str] = set()


def _warn(path: str, why: str) -> None:
    if path in _warned:
        return
    _warned.add(path)
    print(f"netdsl: warning: not using the cache directory {path}: {why}; netdsl runs "
          f"without a cache (set NETDSL_CACHE_DIR to a private directory, or to \"\" to "
          f"turn the cache off and this warning with it)", file=sys.stderr)


def open_cache(fresh: bool = False) -> CacheDir | None:
    """The cache directory, opened and checked once per process; None when caching is
    off, the directory cannot be made, or it is refused (with one warning).

    >>> import os; os.environ["NETDSL_CACHE_DIR"] = ""; print(open_cache(fresh=True))
    None
    >>> del os.environ["NETDSL_CACHE_DIR"]
    """
    global _opened
    path = location()
    if not fresh and _opened is not None and _opened[0] == path:
        return _opened[1]
    close()
    cache = _open(path) if path and _SUPPORTED else None
    _opened = (path, cache)
    return cache


def close() -> None:
    """Close the cache directory this process opened; the next use opens it again.

    >>> close(); close()  # closing twice is fine
    """
    global _opened
    if _opened is not None and _opened[1] is not None:
        try:
            os.close(_opened[1].fd)
        except OSError:
            pass
    _opened = None


def _open(path: str) -> CacheDir | None:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except (OSError, ValueError):
        return None  # no home, a read-only file system: no cache, as before there was one
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            _warn(path, f"it belongs to another user (uid {st.st_uid})")
        elif st.st_mode & 0o022:
            _warn(path, f"its group or others may write to it (mode {stat.S_IMODE(st.st_mode):o}; "
                        f"chmod 700 makes it private)")
        else:
            key = _user_key(fd)
            if key is not None:
                return CacheDir(fd, path, key)
    except OSError:
        pass
    os.close(fd)
    return None


def _user_key(dir_fd: int) -> bytes | None:
    """The MAC key: this user's random secret in ``key``, bound to that file's identity."""
    for _ in range(2):
        try:
            fd = os.open(_KEY, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            # Linked into place only if no other process made one first: every process
            # of this user then agrees on one key.
            _put(dir_fd, _KEY, os.urandom(_KEY_BYTES), replace=False)
            continue
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077
                    or st.st_size != _KEY_BYTES):
                return None
            secret = os.read(fd, _KEY_BYTES)
        finally:
            os.close(fd)
        if len(secret) != _KEY_BYTES:
            return None
        return blake2b(secret + f"\0{st.st_dev}\0{st.st_ino}\0{os.getuid()}".encode(),
                       digest_size=32).digest()
    return None
