"""One policy for every command that writes a file (netdsl/cli/files.py): never over
the spec or a file it imports; over another existing file only with --force or
when it is netdsl's own unchanged output; atomically; and a directory walk stays
in its tree."""

import io
import shutil
import subprocess
import sys

import pytest

from netdsl.cli import main
from netdsl.cli.files import is_own

LIB = "block unit() { relu }\n"
SPEC = 'import "lib.net"\nnetwork n() {\n    input [3, 8, 8]\n    conv2d(4, 3)\n    unit\n}\n'


@pytest.fixture
def tree(tmp_path, monkeypatch):
    (tmp_path / "lib.net").write_text(LIB)
    (tmp_path / "main.net").write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys, *argv):
    capsys.readouterr()
    status = main(list(argv))
    return status, capsys.readouterr().err


@pytest.mark.parametrize("command", [["graph"], ["graph", "--format", "dot"], ["export"]])
def test_never_over_a_file_the_spec_imports_even_with_force(tree, capsys, command):
    for force in ([], ["--force"]):
        status, err = run(capsys, command[0], "main.net", *command[1:], "-o", "lib.net", *force)
        assert status == 2 and "is a file the spec imports" in err
    assert (tree / "lib.net").read_text() == LIB
    status, err = run(capsys, command[0], "main.net", *command[1:], "-o", "main.net", "--force")
    assert status == 2 and "is the spec" in err and (tree / "main.net").read_text() == SPEC


@pytest.mark.parametrize("command, name", [(["graph"], "d.mmd"), (["graph", "--format", "dot"], "d.dot"),
                                           (["export"], "m.py")])
def test_an_existing_file_is_replaced_only_with_consent(tree, capsys, command, name):
    notes = tree / name
    notes.write_text("my notes\n")
    status, err = run(capsys, command[0], "main.net", *command[1:], "-o", name)
    assert status == 2 and "netdsl did not write it" in err and notes.read_text() == "my notes\n"
    assert run(capsys, command[0], "main.net", *command[1:], "-o", name, "--force")[0] == 0
    first = notes.read_bytes()
    assert is_own(first)
    # Its own unchanged output is replaced without --force, and nothing else is left behind.
    assert run(capsys, command[0], "main.net", *command[1:], "-o", name)[0] == 0
    assert notes.read_bytes() == first
    assert sorted(p.name for p in tree.iterdir()) == sorted(["lib.net", "main.net", name])
    # Edited after it was written: refused again.
    notes.write_bytes(first.replace(b"n", b"N", 1))
    status, err = run(capsys, command[0], "main.net", *command[1:], "-o", name)
    assert status == 2 and "changed since" in err
    assert notes.read_bytes() == first.replace(b"n", b"N", 1)


def test_export_never_replaces_an_onnx_model_without_force(tree, capsys):
    model = tree / "resnet.onnx"
    model.write_bytes(b"\x08\x07\x12\x07pytorch")  # what an ONNX file starts with
    status, err = run(capsys, "export", "main.net", "-o", "resnet.onnx")
    assert status == 2 and model.read_bytes() == b"\x08\x07\x12\x07pytorch"


def test_a_failed_write_leaves_the_file_and_no_temporary_file(tree, capsys, monkeypatch):
    out = tree / "d.mmd"
    assert run(capsys, "graph", "main.net", "-o", "d.mmd")[0] == 0
    before = out.read_bytes()
    from netdsl.cli import files

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    status, err = run(capsys, "graph", "main.net", "--format", "dot", "-o", "d.mmd")
    assert status == 2 and "left as it was" in err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tree.iterdir()) == ["d.mmd", "lib.net", "main.net"]


def test_fmt_does_not_follow_a_link_out_of_the_tree(tmp_path, capsys):
    outside = tmp_path / "outside.net"
    messy = "network   n()  {\ninput [3, 8, 8]\n    relu }\n"
    outside.write_text(messy)
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "own.net").write_text(messy)
    (proj / "link.net").symlink_to(outside)
    status, err = run(capsys, "fmt", str(proj))
    assert status == 0 and "skipped" in err and "link.net" in err
    assert outside.read_text() == messy  # untouched
    assert (proj / "own.net").read_text() != messy  # the file in the tree was formatted


def test_fmt_reads_stdin_only_up_to_the_limit(capsys, monkeypatch):
    class Endless(io.RawIOBase):
        asked = 0

        def readable(self):
            return True

        def readinto(self, b):
            Endless.asked += len(b)
            b[:] = b"#" * len(b)
            return len(b)

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(Endless())))
    status, err = run(capsys, "fmt", "-")
    assert status == 1 and "over the limit" in err
    assert Endless.asked < 2 * 500_000 + 100_000  # the limit and a buffer's worth


def test_the_stamp_is_a_comment_each_format_accepts(tree, capsys):
    for fmt, name in [("mermaid", "d.mmd"), ("dot", "d.dot")]:
        assert run(capsys, "graph", "main.net", "--format", fmt, "-o", name)[0] == 0
    assert run(capsys, "export", "main.net", "-o", "m.py")[0] == 0
    # The exported file with its stamp still runs and passes the lint users run on it.
    r = subprocess.run([sys.executable, "-c", "import m; m.N()"], cwd=tree, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "m.py"], cwd=tree,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot (CI installs it)")
def test_graphviz_reads_a_stamped_dot_file(tree, capsys):
    assert run(capsys, "graph", "main.net", "--format", "dot", "-o", "d.dot")[0] == 0
    r = subprocess.run(["dot", "-Tsvg", "d.dot"], cwd=tree, capture_output=True, text=True)
    assert r.returncode == 0 and "<svg" in r.stdout, r.stderr


def test_build_never_saves_over_a_file_the_spec_imports(tree, capsys):
    status, err = run(capsys, "build", "main.net", "--no-fvcore", "--save", "lib.net")
    assert status == 2 and "not overwriting it" in err  # not a checkpoint, to begin with
    status, err = run(capsys, "build", "main.net", "--no-fvcore", "--save", "lib.net", "--force")
    assert status == 2 and "is the spec or a file it imports" in err  # and --force does not change that
    assert (tree / "lib.net").read_text() == LIB


def test_build_skips_fvcores_cross_check_of_a_huge_network_and_says_so(tmp_path, capsys):
    from netdsl.cli.build import FVCORE_MAX_MODULES

    spec = tmp_path / "big.net"
    spec.write_text("network big() {\n input [1, 4, 4]\n concat {\n"
                    f"  for i in range({FVCORE_MAX_MODULES + 1}) {{ conv2d(1, 1) }}\n }}\n}}\n")
    capsys.readouterr()
    assert main(["build", str(spec), "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert f"fvcore cross-check: skipped: {FVCORE_MAX_MODULES + 1:,} modules" in out
