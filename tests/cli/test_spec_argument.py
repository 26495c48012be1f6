"""The spec argument of every command is a path, whatever its name holds; `-` is the
only way to give spec text, on stdin, read within the size limit and never cached."""

import io
import subprocess
import sys

import pytest

from netdsl import cachedir, cli
from netdsl.cli import checkcache

TEXT = "network n() {\n    input [3, 8, 8]\n    conv2d(4, 3)\n}\n"
BAD = "network n() {\n    input [3, 8, 8]\n    conv2d(4, 30)\n}\n"
# A file name that is also valid spec text: it must be read as a path.
NAME = "network n() { input [3, 8, 8] } #.net"

COMMANDS = [["check"], ["build", "--no-fvcore"], ["export"], ["graph"], ["diff"], ["sweep", "--grid", "x=1"]]


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NETDSL_CACHE_DIR", str(tmp_path / "cache"))
    cachedir.close()
    yield tmp_path
    monkeypatch.undo()
    cachedir.close()


def run(capsys, argv, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    capsys.readouterr()
    status = cli.main(argv, cache=True)
    out, err = capsys.readouterr()
    return out, err, status


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_name_that_looks_like_spec_text_is_read_as_a_path(work, capsys, command):
    (work / NAME).write_text("whatever is in the file\n")
    out, err, status = run(capsys, [command[0], NAME, *command[1:]])
    # sweep too: a spec that does not parse is the sweep's error, once, not each row's.
    assert status == 1, (out, err)
    assert "unexpected `whatever`" in err and f"--> {NAME}:1:1" in err


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_missing_file_named_like_text_is_not_found(work, capsys, command):
    out, err, status = run(capsys, [command[0], NAME, *command[1:]])
    assert "E0105" in out + err and "spec file not found" in out + err


def test_dash_reads_the_spec_from_stdin(work, capsys, monkeypatch):
    out, err, status = run(capsys, ["check", "-"], TEXT.encode(), monkeypatch)
    assert status == 0 and "[4, 6, 6]" in out
    out, err, status = run(capsys, ["check", "-"], BAD.encode(), monkeypatch)
    assert status == 1 and "--> <stdin>:3:" in err


@pytest.mark.parametrize("command", [["build", "--no-fvcore"], ["export"], ["graph"], ["sweep", "--grid", "x=1"]],
                         ids=lambda c: c[0])
def test_every_spec_command_takes_stdin(work, capsys, monkeypatch, command):
    text = TEXT.replace("network n()", "network n(x = 1)")
    out, err, status = run(capsys, [command[0], "-", *command[1:]], text.encode(), monkeypatch)
    assert status == 0, err
    assert out


def test_stdin_is_read_only_up_to_the_limit(work, capsys, monkeypatch):
    class Endless(io.RawIOBase):
        asked = 0

        def readable(self):
            return True

        def readinto(self, b):
            Endless.asked += len(b)
            b[:] = b"#" * len(b)
            return len(b)

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(Endless())))
    capsys.readouterr()
    status = cli.main(["check", "-", "--limit", "max_file_bytes=1000"], cache=True)
    err = capsys.readouterr().err
    assert status == 1 and "standard input is over the limit of 1000 bytes" in err
    assert Endless.asked < 100_000  # the limit and a buffer's worth, not the whole stream


@pytest.mark.parametrize("command", [["check", "-"], ["sweep", "-", "--grid", "nope=3"], ["fmt", "-"]])
def test_stdin_is_read_under_the_largest_limit(work, capsys, monkeypatch, command):
    # Found by the fuzzer: `--limit max_file_bytes=9223372036854775807` made the read of
    # stdin ask for 2⁶³ bytes at once (OverflowError, exit 3); a smaller huge limit, a
    # MemoryError. It is read a megabyte at a time.
    limit = [] if command[0] == "fmt" else ["--limit", "max_file_bytes=9223372036854775807"]
    out, err, status = run(capsys, command + limit, TEXT.encode(), monkeypatch)
    assert status in (0, 1) and "internal error" not in err and "Traceback" not in err, err


def test_a_check_of_stdin_is_never_answered_from_the_cache(work, capsys, monkeypatch):
    (work / "good.net").write_text(TEXT)
    (work / "blocks.net").write_text("block b() { relu }\n")
    spec = 'import "blocks.net"\n' + TEXT.replace("conv2d(4, 3)", "conv2d(4, 3)\n    b")
    assert run(capsys, ["check", "-"], spec.encode(), monkeypatch)[2] == 0
    assert list((work / "cache").glob("*.check")) == []
    assert checkcache.replay(["check", "-"]) is None
    bad = spec.replace("conv2d(4, 3)", "conv2d(4, 30)")
    assert run(capsys, ["check", "-"], bad.encode(), monkeypatch)[2] == 1


@pytest.mark.slow
def test_stdin_in_a_fresh_process(tmp_path):
    r = subprocess.run([sys.executable, "-m", "netdsl", "check", "-"], input=BAD, text=True,
                       capture_output=True, cwd=tmp_path)
    assert r.returncode == 1 and "--> <stdin>:3:" in r.stderr
