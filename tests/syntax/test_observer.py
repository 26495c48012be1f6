"""The loader's observer (netdsl/syntax/observer.py): the front end reports every look it
takes at the file system to the observer installed, knows nothing of who listens, and
the check cache's Recorder is one such observer."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import netdsl
from netdsl.api import Stdin
from netdsl.cli import checkcache
from netdsl.limits import Limits
from netdsl.syntax import loader, observer

ROOT = Path(__file__).resolve().parents[2]


class Log:
    def __init__(self):
        self.seen_, self.stdin = [], 0

    def seen(self, kind, path, result):
        self.seen_.append((kind, os.fspath(path), result))

    def uncacheable(self):
        self.stdin += 1


@pytest.fixture
def log():
    with observer.observing(Log()) as installed:
        yield installed
    assert observer.installed() is None


def test_a_load_reports_each_look_in_order_with_the_result_the_contract_names(tmp_path, log):
    (tmp_path / "blocks.net").write_text("block b() { relu }\n")
    (tmp_path / "main.net").write_text('import "blocks.net"\nnetwork n() {\n input [3, 8, 8]\n b\n}\n')
    netdsl.compile(str(tmp_path / "main.net"))
    assert {kind for kind, _, _ in log.seen_} <= set(observer.KINDS)
    reads = [(Path(p).name, data) for kind, p, data in log.seen_ if kind == "read"]
    assert reads == [("main.net", (tmp_path / "main.net").read_bytes()),
                     ("blocks.net", (tmp_path / "blocks.net").read_bytes())]
    for kind, path, result in log.seen_:
        expected = {"stat": (os.stat_result, OSError), "read": bytes, "real": (str, type(None)),
                    "isdir": bool}[kind]
        assert isinstance(result, expected), (kind, path, result)
    # The import was located (resolved, then stat'ed) before it was read.
    kinds = [(kind, Path(p).name) for kind, p, _ in log.seen_]
    assert kinds.index(("real", "blocks.net")) < kinds.index(("stat", "blocks.net")) \
        < kinds.index(("read", "blocks.net"))


def test_a_missing_file_is_reported_with_its_error(tmp_path, log):
    with pytest.raises(netdsl.NetdslError):
        netdsl.compile(str(tmp_path / "gone.net"))
    ((kind, path, error),) = [s for s in log.seen_ if s[0] == "stat"]
    assert isinstance(error, FileNotFoundError) and path == str(tmp_path / "gone.net")


def test_an_import_directory_is_reported_as_a_directory_test(tmp_path, log):
    loader.Reach(tmp_path, [tmp_path])
    assert ("isdir", os.path.realpath(tmp_path), True) in log.seen_


def test_reading_standard_input_is_reported_as_uncacheable(log):
    Stdin(io.BytesIO(b"network n() { input [4]\n linear(2) }")).read(Limits())
    assert log.stdin == 1


def test_with_no_observer_nothing_is_reported_and_nothing_fails(tmp_path):
    assert observer.installed() is None
    (tmp_path / "a.net").write_text("network n() { input [4]\n linear(2) }\n")
    netdsl.compile(str(tmp_path / "a.net"))


def test_the_observer_before_is_restored_also_on_an_error():
    outer, inner = Log(), Log()
    with observer.observing(outer):
        with pytest.raises(ZeroDivisionError), observer.observing(inner):
            observer.seen("isdir", "/", True)
            raise ZeroDivisionError
        observer.seen("isdir", "/tmp", True)
    assert observer.installed() is None
    assert inner.seen_ == [("isdir", "/", True)] and outer.seen_ == [("isdir", "/tmp", True)]


def test_the_check_caches_recorder_is_the_observer_while_it_records(tmp_path, monkeypatch):
    from netdsl import cachedir

    monkeypatch.setenv("NETDSL_CACHE_DIR", str(tmp_path / "cache"))
    cachedir.close()
    try:
        before = Log()
        with observer.observing(before):
            recorder = checkcache.record(["check", "x.net"])
            assert recorder is not None and observer.installed() is recorder
            observer.seen("read", "x.net", b"x")
            observer.uncacheable()
            recorder.finish(None)
            assert observer.installed() is before
        assert recorder.trace == [("read", "x.net", checkcache._summary("read", b"x"))]
        assert recorder.tainted and before.seen_ == []
    finally:
        cachedir.close()


def test_the_syntax_package_imports_no_command_line_module():
    # Statically: no module of the package names the CLI ...
    for path in (ROOT / "netdsl" / "syntax").glob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+(\.\.cli|netdsl\.cli)\b", path.read_text(), re.M), path.name
    # ... and a load in a fresh process imports none of it.
    code = ("import sys, netdsl; from netdsl.syntax import loader; from pathlib import Path\n"
            "loader.load('block b() { relu }', None, Path('.'), netdsl.Limits())\n"
            "print(sorted(m for m in sys.modules if m.startswith('netdsl.cli')))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
