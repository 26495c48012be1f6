"""The cache directory under attack (netdsl/cachedir.py): a directory someone else
can write, planted pickles and marshal entries, symlinks, FIFOs, truncated,
oversized and copied entries. None of them may run code, write outside the
directory, hang, or make `check` report anything but the spec's own result.

The tests plant files as an attacker with write access would: at the exact names
netdsl uses, with the formats netdsl reads. They run the command in this process
(`cli.main(..., cache=True)` records and replays exactly as the command line does)
and, where code execution is the question, in a fresh process."""

import marshal
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from netdsl import cachedir, cli
from netdsl.cli import checkcache
from netdsl.syntax import parser

GOOD = "network n() {\n    input [3, 8, 8]\n    conv2d(4, 3)\n}\n"
BAD = "network n() {\n    input [3, 8, 8]\n    conv2d(4, 30)\n}\n"  # kernel larger than the input


class Plant:
    """Run ``pathlib.Path(marker).touch()`` when unpickled: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working directory with a good and a bad spec, and a cache directory of its own."""
    w = tmp_path / "work"
    w.mkdir()
    (w / "good.net").write_text(GOOD)
    (w / "bad.net").write_text(BAD)
    monkeypatch.chdir(w)
    monkeypatch.setenv("NETDSL_CACHE_DIR", str(tmp_path / "cache"))
    cachedir._warned.clear()
    cachedir.close()
    parser._lark.cache_clear()
    parser._PARSED.clear()
    yield w
    monkeypatch.undo()
    cachedir.close()
    parser._lark.cache_clear()
    parser._PARSED.clear()


def run(capsys, argv):
    capsys.readouterr()
    status = cli.main(list(argv), cache=True)
    out, err = capsys.readouterr()
    return out, err, status


def cache_path() -> Path:
    return Path(os.environ["NETDSL_CACHE_DIR"])


def entry_for(argv) -> Path:
    return cache_path() / checkcache._entry_name(checkcache.key(list(argv)))


def false_ok_entry(argv) -> bytes:
    """What a forger would write: the right key, an exit status of 0, "all good"."""
    k = checkcache.key(list(argv))
    trace = [("read", str(Path("bad.net").resolve()), "0" * 40)]
    return marshal.dumps((checkcache.FORMAT, k, trace, [], [(1, "all good\n")], 0))


# ---------------------------------------------------------------- whose directory


def test_a_directory_others_can_write_is_refused_with_one_warning(work, capsys):
    d = cache_path()
    d.mkdir(mode=0o700)
    d.chmod(0o777)
    first = run(capsys, ["check", "good.net"])
    assert first[2] == 0
    assert "not using the cache directory" in first[1] and "mode 777" in first[1]
    assert run(capsys, ["check", "good.net"])[1].count("warning") == 0  # said once
    assert sorted(p.name for p in d.iterdir()) == []  # nothing written there


def test_a_directory_of_another_user_is_refused(work, capsys):
    if os.getuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    d = cache_path()
    d.mkdir(mode=0o700)
    os.chown(d, 4321, 4321)
    out, err, status = run(capsys, ["check", "good.net"])
    assert status == 0 and "belongs to another user (uid 4321)" in err
    assert list(d.iterdir()) == []


def test_a_new_directory_is_private(work):
    assert cachedir.open_cache() is not None
    assert stat.S_IMODE(cache_path().stat().st_mode) == 0o700
    assert stat.S_IMODE((cache_path() / "key").stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o604])
def test_a_key_others_can_read_means_no_cache(work, mode):
    assert cachedir.open_cache() is not None
    (cache_path() / "key").chmod(mode)
    assert cachedir.open_cache(fresh=True) is None


# ---------------------------------------------------------------- no code runs


@pytest.mark.slow
def test_a_planted_pickle_as_the_parser_tables_runs_nothing(work, tmp_path):
    # Fill the cache once, then replace the tables, and an old-style Lark cache file, with
    # pickles that would create a file if unpickled; a new process parses as if none were there.
    env = {**os.environ}
    subprocess.run([sys.executable, "-m", "netdsl", "check", "good.net", "--no-cache"], env=env,
                   check=True, capture_output=True)
    (tables,) = cache_path().glob("lark-*.tables")
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Plant(marker))
    tables.write_bytes(payload)
    (cache_path() / tables.name.replace(".tables", ".pickle")).write_bytes(b"0" * 64 + b"\n" + payload)
    r = subprocess.run([sys.executable, "-m", "netdsl", "check", "bad.net", "--no-cache"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "E0304" in r.stderr, r.stderr
    assert not marker.exists()
    assert cachedir.open_cache(fresh=True).read(tables.name, 2**24) is not None  # rebuilt


def test_a_planted_pickle_as_a_check_entry_runs_nothing(work, capsys, tmp_path):
    argv = ["check", "bad.net"]
    marker = tmp_path / "pwned"
    cachedir.open_cache()
    entry_for(argv).write_bytes(pickle.dumps(Plant(marker)))
    assert run(capsys, argv)[2] == 1
    assert not marker.exists()


# ---------------------------------------------------------------- no false result


def test_a_forged_entry_never_makes_a_bad_spec_pass(work, capsys):
    argv = ["check", "bad.net"]
    cachedir.open_cache()
    entry_for(argv).write_bytes(false_ok_entry(argv))
    out, err, status = run(capsys, argv)
    assert status == 1 and "all good" not in out and "E0304" in err


def test_a_forged_entry_with_the_magic_and_a_wrong_mac_is_a_miss(work, capsys):
    argv = ["check", "bad.net"]
    cachedir.open_cache()
    entry_for(argv).write_bytes(cachedir.MAGIC + b"\0" * 32 + false_ok_entry(argv))
    assert run(capsys, argv)[2] == 1


def test_a_copied_cache_directory_is_not_trusted(work, capsys, tmp_path, monkeypatch):
    # A cache restored from elsewhere (a CI cache, a team share) carries its key along;
    # the key is bound to the file it lives in, so nothing in the copy verifies.
    first = run(capsys, ["check", "good.net"])
    assert len(list(cache_path().glob("*.check"))) == 1
    copy = tmp_path / "copy"
    copy.mkdir(mode=0o700)
    for p in cache_path().iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
        (copy / p.name).chmod(0o600)
    monkeypatch.setenv("NETDSL_CACHE_DIR", str(copy))
    cachedir.open_cache(fresh=True)
    assert checkcache.replay(["check", "good.net"]) is None
    assert run(capsys, ["check", "good.net"]) == first


def test_an_entry_of_a_run_that_read_no_spec_is_never_replayed(work, capsys):
    argv = ["check", "good.net"]
    k = checkcache.key(argv)
    forged = marshal.dumps((checkcache.FORMAT, k, [], [], [(1, "ok\n")], 0))
    assert cachedir.open_cache().write(checkcache._entry_name(k), forged)  # even with the key
    assert checkcache.replay(argv) is None


# ---------------------------------------------------------------- bounded


def test_an_entry_declaring_a_huge_list_is_never_decoded(work, capsys):
    argv = ["check", "good.net"]
    cachedir.open_cache()
    bomb = b"[\xff\xff\xff\x7f" + b"N" * 10  # marshal: a list of 2**31 - 1 items, then nothing
    entry_for(argv).write_bytes(bomb)
    with mock.patch.object(checkcache.marshal, "loads", side_effect=AssertionError("decoded")):
        assert checkcache.replay(argv) is None


def test_an_oversized_entry_is_not_read(work, monkeypatch):
    argv = ["check", "good.net"]
    cache = cachedir.open_cache()
    name = checkcache._entry_name(checkcache.key(argv))
    assert cache.write(name, b"x" * (checkcache.MAX_ENTRY_BYTES + 1))
    reads = []
    real = os.read
    monkeypatch.setattr(cachedir.os, "read", lambda fd, n: reads.append(n) or real(fd, n))
    assert cache.read(name, checkcache.MAX_ENTRY_BYTES) is None
    assert reads == []  # refused by its size, before any byte was read


@pytest.mark.parametrize("cut", [0, 8, 40, -1])
def test_a_truncated_entry_is_a_miss(work, capsys, cut):
    first = run(capsys, ["check", "good.net"])
    (entry,) = cache_path().glob("*.check")
    data = entry.read_bytes()
    entry.write_bytes(data[:cut])
    assert checkcache.replay(["check", "good.net"]) is None
    assert run(capsys, ["check", "good.net"]) == first


def test_a_fifo_planted_as_an_entry_does_not_hang(work):
    argv = ["check", "good.net"]
    cachedir.open_cache()
    os.mkfifo(entry_for(argv))
    assert checkcache.replay(argv) is None


# ---------------------------------------------------------------- nothing written outside


@pytest.mark.slow
def test_symlinks_planted_in_the_directory_are_never_followed(work, capsys, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    argv = ["check", "good.net"]
    run(capsys, ["check", "bad.net"])  # makes the directory, its key and the tables
    (tables,) = cache_path().glob("lark-*.tables")
    tables.unlink()
    tables.symlink_to(victim)
    entry_for(argv).symlink_to(victim)
    for i in range(64):  # names a temp file might have had (they are random now)
        (cache_path() / f"{entry_for(argv).name}.{i}.tmp").symlink_to(victim)
    parser._lark.cache_clear()
    parser._PARSED.clear()
    assert run(capsys, argv)[2] == 0
    assert victim.read_text() == "precious\n"
    # The links were replaced by files, not written through.
    assert not entry_for(argv).is_symlink() and not tables.is_symlink()


def test_a_symlinked_key_is_refused(work, tmp_path):
    assert cachedir.open_cache() is not None
    secret = tmp_path / "known"
    secret.write_bytes(b"k" * 32)
    secret.chmod(0o600)
    (cache_path() / "key").unlink()
    (cache_path() / "key").symlink_to(secret)
    assert cachedir.open_cache(fresh=True) is None
    assert secret.read_bytes() == b"k" * 32
