"""Writing a built model's ``state_dict`` to a file without losing data.

``torch.save(state, path)`` truncates ``path`` first, so a failed write leaves half
a file, and it overwrites whatever is there, the spec being built included. Here
the target is checked before anything is built, the checkpoint is written to a
temporary file beside it and moved over the target only once complete.
Reading one back (``build --weights``) runs no code: ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import zipfile
from pathlib import Path

# What torch.save's legacy (non-zip) format starts with: a protocol-2 pickle of
# torch.serialization.MAGIC_NUMBER.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


class SaveError(Exception):
    """The checkpoint cannot or should not be written there; the message says why."""


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds what ``torch.save`` writes: a zip archive with a
    ``*/data.pkl`` member, or the legacy pickle format.

    >>> import io, torch
    >>> p = Path(tempfile.mkdtemp()) / "w.pt"
    >>> torch.save({"w": torch.zeros(1)}, p)
    >>> is_checkpoint(p), is_checkpoint(Path(__file__))
    (True, False)
    """
    try:
        with open(path, "rb") as f:
            if f.read(len(_LEGACY_MAGIC)) == _LEGACY_MAGIC:
                return True
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            return any(name.endswith("/data.pkl") and name.count("/") == 1 for name in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def check_target(path: str, *, force: bool = False, keep: tuple[str, ...] = (), flag: str = "--save") -> Path:
    """Where a checkpoint for ``path`` will be written (symbolic links followed),
    or SaveError when it should not be: a directory, a FIFO or device, a missing
    directory, one of the ``keep`` files (the spec), or an existing file that is not
    a checkpoint (unless ``force``). Messages name the option as ``flag``.

    >>> check_target("/no/such/dir/model.pt")
    Traceback (most recent call last):
      ...
    netdsl.backend.checkpoint.SaveError: --save /no/such/dir/model.pt: the directory /no/such/dir does not exist
    """
    if not path:
        raise SaveError(f"{flag} needs a file name")
    target = Path(os.path.realpath(path))
    try:
        st = target.stat()
    except FileNotFoundError:
        parent = target.parent
        if not parent.is_dir():
            raise SaveError(f"{flag} {path}: the directory {Path(path).parent} does not exist") from None
        return target
    except OSError as e:
        raise SaveError(f"{flag} {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SaveError(f"{flag} {path}: is a directory; give a file name inside it")
    if not stat.S_ISREG(st.st_mode):
        raise SaveError(f"{flag} {path}: is not a regular file (a FIFO, socket or device); "
                        "give the name of a file")
    for other in keep:
        try:
            same = os.path.samefile(target, other)
        except (OSError, TypeError):  # TypeError: the spec is stdin
            same = False
        if same:
            raise SaveError(f"{flag} {path}: is the spec or a file it imports; netdsl never writes "
                            "over a spec (give another file name)")
    if not force and not is_checkpoint(target):
        raise SaveError(f"{flag} {path}: the file exists and is not a PyTorch checkpoint; "
                        "not overwriting it (--force replaces it)")
    return target


def save(state: dict, path: str, target: Path, flag: str = "--save") -> None:
    """Write ``state`` with ``torch.save`` to ``target`` (from :func:`check_target`)
    atomically: a temporary file in the same directory, moved over ``target`` once
    written and flushed to disk; on any failure the temporary file is removed and
    ``target`` is as it was. ``path`` is the name the user gave, for messages.

    >>> import torch
    >>> p = Path(tempfile.mkdtemp()) / "w.pt"
    >>> save({"w": torch.ones(2)}, str(p), p)
    >>> torch.load(p)["w"].tolist()
    [1.0, 1.0]
    """
    import torch

    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise SaveError(f"{flag} {path}: cannot write in {Path(path).parent}: "
                        f"{e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if not isinstance(e, Exception) or isinstance(e, SaveError):
            raise
        kept = "left as it was" if target.exists() else "not created"
        why = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
        raise SaveError(f"{flag} {path}: writing the checkpoint failed ({why}); "
                        f"the file was {kept}") from None


class ReadError(Exception):
    """A weights file that cannot be read as a state_dict; the message says why."""


def read(path: str) -> dict:
    """The state_dict in the checkpoint ``path``, read with ``torch.load(weights_only=True)``
    (so reading it runs no code) onto the CPU: a bare state_dict, or one under
    ``"state_dict"`` or ``"model"`` as training scripts save it. Anything else is
    a ReadError.

    >>> import torch
    >>> p = Path(tempfile.mkdtemp()) / "w.pt"
    >>> torch.save({"epoch": 3, "model": {"fc.weight": torch.zeros(2)}}, p)
    >>> list(read(str(p)))
    ['fc.weight']
    >>> read("/no/such/w.pt")
    Traceback (most recent call last):
      ...
    netdsl.backend.checkpoint.ReadError: --weights /no/such/w.pt: No such file or directory
    """
    import pickle

    import torch

    if os.path.isfile(path) and not is_checkpoint(Path(path)):
        raise ReadError(f"--weights {path}: is not a PyTorch checkpoint (what torch.save writes)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise ReadError(f"--weights {path}: {e.strerror or e}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as e:
        why = (str(e).strip() or type(e).__name__).split(". ")[0].splitlines()[0].rstrip(".")
        raise ReadError(f"--weights {path}: not a checkpoint of tensors that loads without running "
                        f"code ({why}); a whole pickled model must be saved as "
                        "torch.save(model.state_dict(), FILE) first") from None
    if isinstance(data, dict):
        for key in ("state_dict", "model"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
        raise ReadError(f"--weights {path}: holds no state_dict (a dict of tensor names to tensors, "
                        "bare or under \"state_dict\" or \"model\")")
    return data


def _mode_for(target: Path) -> int:
    """The permissions ``open(target, "wb")`` would give: the old file's, or the
    default for a new file (mkstemp's are owner-only)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


__all__ = ["ReadError", "SaveError", "check_target", "is_checkpoint", "read", "save"]
