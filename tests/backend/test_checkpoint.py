"""`netdsl build --save` never loses data: it writes a temporary file and moves
it into place, replaces only checkpoints unless --force, refuses what is not a
file, and reports every failure as a usage error (exit 2), never a traceback."""

import errno
import os
import stat
import zipfile

import pytest
import torch

from netdsl.backend import checkpoint
from netdsl.cli import main

SPEC = "network tiny() { input [1, 8, 8]\n c: conv2d(2, 3)\n flatten\n fc: linear(3) }\n"


@pytest.fixture
def spec(tmp_path):
    p = tmp_path / "tiny.net"
    p.write_text(SPEC)
    return str(p)


def build(spec, *args):
    return main(["build", spec, "--no-fvcore", *args])


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_a_new_checkpoint_is_written_with_the_usual_permissions(spec, tmp_path, capsys):
    out = tmp_path / "tiny.pt"
    assert build(spec, "--save", str(out)) == 0
    assert sorted(torch.load(out)) == ["c.bias", "c.weight", "fc.bias", "fc.weight"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert _leftovers(tmp_path) == []
    assert f"state_dict saved to {out}" in capsys.readouterr().out


@pytest.mark.parametrize("zip_format", [True, False])
def test_an_existing_checkpoint_is_replaced(spec, tmp_path, zip_format):
    out = tmp_path / "old.pt"
    torch.save({"old": torch.zeros(1)}, out, _use_new_zipfile_serialization=zip_format)
    os.chmod(out, 0o640)
    assert checkpoint.is_checkpoint(out)
    assert build(spec, "--save", str(out)) == 0
    assert "c.weight" in torch.load(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_a_symbolic_link_is_followed(spec, tmp_path):
    real = tmp_path / "real.pt"
    torch.save({}, real)
    link = tmp_path / "link.pt"
    link.symlink_to(real)
    assert build(spec, "--save", str(link)) == 0
    assert link.is_symlink() and "c.weight" in torch.load(real)


@pytest.mark.parametrize("content", [b"my notes\n", b"", b"PK\x03\x04 not really a zip"])
def test_a_file_that_is_not_a_checkpoint_is_kept_unless_forced(spec, tmp_path, capsys, content):
    out = tmp_path / "notes.txt"
    out.write_bytes(content)
    assert build(spec, "--save", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"netdsl: error: --save {out}: the file exists and is not a PyTorch checkpoint")
    assert "--force" in err
    assert out.read_bytes() == content
    assert build(spec, "--save", str(out), "--force") == 0
    assert "c.weight" in torch.load(out)


def test_a_zip_that_is_not_a_checkpoint_is_kept(spec, tmp_path):
    out = tmp_path / "data.zip"
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("readme.txt", "hello")
    before = out.read_bytes()
    assert build(spec, "--save", str(out)) == 2
    assert out.read_bytes() == before


def test_the_spec_itself_is_never_overwritten(spec, capsys):
    assert build(spec, "--save", spec, "--force") == 2
    assert "is the spec or a file it imports" in capsys.readouterr().err
    assert open(spec).read() == SPEC


def test_a_directory_is_refused(spec, tmp_path, capsys):
    assert build(spec, "--save", str(tmp_path), "--force") == 2
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_device_is_refused_even_when_forced(spec, tmp_path, capsys, kind):
    if kind == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)
    else:
        target = "/dev/null"
    assert build(spec, "--save", str(target), "--force") == 2
    assert "is not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.stat(target).st_mode) if kind == "fifo" else stat.S_ISCHR(os.stat(target).st_mode)


def test_a_missing_directory_is_refused(spec, tmp_path, capsys):
    out = tmp_path / "nope" / "model.pt"
    assert build(spec, "--save", str(out)) == 2
    assert f"the directory {tmp_path / 'nope'} does not exist" in capsys.readouterr().err


def test_a_meta_model_has_nothing_to_save(spec, tmp_path, capsys):
    assert build(spec, "--device", "meta", "--save", str(tmp_path / "m.pt")) == 2
    assert "meta device has no values to save" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "tiny.net"]


@pytest.mark.parametrize("args", [("--save", ""), ("--force",)])
def test_save_flags_without_a_file_are_usage_errors(spec, args):
    assert build(spec, *args) == 2


def test_the_target_is_checked_before_anything_is_built(spec, tmp_path, monkeypatch):
    import netdsl.backend.lower

    monkeypatch.setattr(netdsl.backend.lower, "lower", lambda *a, **k: pytest.fail("built before checking"))
    assert build(spec, "--save", str(tmp_path / "nope" / "m.pt")) == 2


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                                   RuntimeError("PytorchStreamWriter failed writing file data/0")])
def test_a_failed_save_leaves_the_old_file_byte_identical(spec, tmp_path, monkeypatch, capsys, error):
    out = tmp_path / "model.pt"
    torch.save({"old": torch.arange(1000.0)}, out)
    before = out.read_bytes()

    def half_then_fail(obj, f, *a, **k):
        f.write(before[: len(before) // 2])  # a torn write, as a full disk leaves it
        raise error

    monkeypatch.setattr(torch, "save", half_then_fail)
    assert build(spec, "--save", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"netdsl: error: --save {out}: writing the checkpoint failed (")
    assert "the file was left as it was" in err and "Traceback" not in err
    assert out.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_a_failed_first_save_creates_nothing(spec, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    assert build(spec, "--save", str(tmp_path / "m.pt")) == 2
    assert "(I/O error); the file was not created" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.net"]


def test_an_unwritable_directory_is_a_usage_error(spec, tmp_path, monkeypatch, capsys):
    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", refuse)
    assert build(spec, "--save", str(tmp_path / "m.pt")) == 2
    assert "cannot write in" in capsys.readouterr().err
