"""The result cache of `netdsl check` (netdsl/cli/checkcache.py): a hit prints what the
miss printed, byte for byte, with its exit status; any change to what the output
depends on is a miss; a broken cache is no cache.

Most tests run the command in this process (`cli.main(..., cache=True)`), which
records on a miss exactly as a fresh process does; two run it as a user does, in subprocesses, to
show a hit imports none of the compiler."""

import json
import os
import subprocess
import sys
from pathlib import Path

import errors_doc
import pytest
from shipped import allow_args

from netdsl import cachedir, cli
from netdsl.cli import check as cli_check
from netdsl.cli import checkcache

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.net"))

SPEC = "network n(c = 4) {\n    input [3, 8, 8]\n    conv2d(c, 3)\n    b\n}\n"
BLOCK = "block b() { relu }\n"
BAD = "network n() {\n    input [3, 8, 8]\n    conv2d(4, 30)\n}\n"  # kernel larger than the input


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache directory for the test, opened anew."""
    d = tmp_path / "cache"
    monkeypatch.setenv("NETDSL_CACHE_DIR", str(d))
    cachedir.open_cache(fresh=True)
    yield d
    monkeypatch.delenv("NETDSL_CACHE_DIR")
    cachedir.open_cache(fresh=True)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A spec importing a block from another file, in the working directory."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "main.net").write_text('import "blocks.net"\n' + SPEC)
    (work / "blocks.net").write_text(BLOCK)
    monkeypatch.chdir(work)
    return work


def run(capsys, argv):
    """(stdout, stderr, status) of `netdsl ARGV` run in full, here."""
    capsys.readouterr()
    status = cli.main(list(argv), cache=True)
    out, err = capsys.readouterr()
    return out, err, status


def replay(capsys, argv):
    """(stdout, stderr, status) of a cache hit for ARGV, or None on a miss."""
    capsys.readouterr()
    status = checkcache.replay(list(argv))
    out, err = capsys.readouterr()
    if status is None:
        assert out == err == "", "a miss printed something"
        return None
    return out, err, status


def entries(cache):
    return sorted(cache.glob("*.check")) if cache.is_dir() else []


def rewrite(entry, data: bytes) -> None:
    """Store ``data`` as the entry's contents, authenticated with this user's key, as
    netdsl would: what a test then checks is the entry's validation, not the MAC."""
    assert cachedir.open_cache().write(entry.name, data)


# ---------------------------------------------------------------- hits replay misses


@pytest.mark.parametrize("text, status", [(SPEC, 0), (BAD, 1)])
def test_a_hit_is_the_miss_byte_for_byte_without_running_the_check(cache, tree, capsys, monkeypatch,
                                                                   text, status):
    (tree / "main.net").write_text('import "blocks.net"\n' + text)
    argv = ["check", "main.net"]
    miss = run(capsys, argv)
    assert miss[2] == status and (miss[1] != "") == (status == 1)
    assert len(entries(cache)) == 1
    monkeypatch.setattr(cli_check, "run", lambda args: pytest.fail("a hit ran the check"))
    assert replay(capsys, argv) == miss
    assert run(capsys, argv) == miss  # main answers from the cache too
    with pytest.raises(pytest.fail.Exception):  # called as a function, main runs in full
        cli.main(argv)


def test_check_without_cache_prints_the_same_and_stores_nothing(cache, tree, capsys):
    first = run(capsys, ["check", "main.net", "--no-cache"])
    assert run(capsys, ["check", "main.net", "--no-c"]) == first  # argparse's abbreviation
    assert entries(cache) == []
    assert run(capsys, ["check", "main.net"]) == first  # a miss, recorded
    assert replay(capsys, ["check", "main.net", "--no-cache"]) is None


# ---------------------------------------------------------------- what makes a miss


def test_editing_the_spec_is_a_miss(cache, tree, capsys):
    run(capsys, ["check", "main.net"])
    (tree / "main.net").write_text('import "blocks.net"\n' + SPEC.replace("conv2d(c, 3)", "conv2d(c, 5)"))
    assert replay(capsys, ["check", "main.net"]) is None
    out = run(capsys, ["check", "main.net"])
    assert replay(capsys, ["check", "main.net"]) == out


def test_editing_an_imported_file_is_a_miss(cache, tree, capsys):
    run(capsys, ["check", "main.net"])
    assert replay(capsys, ["check", "main.net"]) is not None
    (tree / "blocks.net").write_text("block b() { sigmoid }\n")
    assert replay(capsys, ["check", "main.net"]) is None
    assert "Sigmoid" in run(capsys, ["check", "main.net"])[0]


def test_a_file_appearing_earlier_on_the_import_path_is_a_miss(cache, tree, capsys):
    # blocks.net found in an --import-path directory; then one appears beside the spec,
    # which is searched first: the same argv now means another file.
    (tree / "lib").mkdir()
    (tree / "blocks.net").rename(tree / "lib" / "blocks.net")
    argv = ["check", "main.net", "--import-path", "lib"]
    run(capsys, argv)
    assert replay(capsys, argv) is not None
    (tree / "blocks.net").write_text("block b() { sigmoid }\n")
    assert replay(capsys, argv) is None


def test_a_missing_import_that_appears_is_a_miss(cache, tree, capsys):
    (tree / "blocks.net").unlink()
    assert run(capsys, ["check", "main.net"])[2] == 1
    assert replay(capsys, ["check", "main.net"]) is not None  # errors are cached too
    (tree / "blocks.net").write_text(BLOCK)
    assert replay(capsys, ["check", "main.net"]) is None


@pytest.mark.parametrize("variant", [
    ["--set", "c=8"], ["--format", "json"], ["--depth", "1"], ["--emit-ir"],
    ["--limit", "max_params=10"], ["--input", "3,16,16"]])
def test_another_option_is_another_entry(cache, tree, capsys, variant):
    base = run(capsys, ["check", "main.net"])
    assert replay(capsys, ["check", "main.net", *variant]) is None
    other = run(capsys, ["check", "main.net", *variant])
    assert other != base
    assert replay(capsys, ["check", "main.net", *variant]) == other
    assert replay(capsys, ["check", "main.net"]) == base


def test_the_environment_and_the_working_directory_are_in_the_key(cache, tree, capsys, monkeypatch):
    run(capsys, ["check", "main.net"])
    monkeypatch.setenv("PYTHONHASHSEED", "123")
    assert replay(capsys, ["check", "main.net"]) is None
    monkeypatch.delenv("PYTHONHASHSEED")
    assert replay(capsys, ["check", "main.net"]) is not None
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")  # not one that changes the output
    assert replay(capsys, ["check", "main.net"]) is not None
    (tree / "sub").mkdir()
    (tree / "sub" / "main.net").write_text((tree / "main.net").read_text())
    (tree / "sub" / "blocks.net").write_text(BLOCK)
    monkeypatch.chdir(tree / "sub")
    assert replay(capsys, ["check", "main.net"]) is None


def test_a_terminal_is_another_key(monkeypatch):
    class Tty:
        encoding, errors = "utf-8", "strict"

        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.setattr(sys, "stdout", Tty(False))
    pipe = checkcache.key(["check", "x.net"])
    monkeypatch.setattr(sys, "stdout", Tty(True))
    assert checkcache.key(["check", "x.net"]) != pipe


def test_the_package_hash_covers_every_file_but_bytecode(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "stdlib").mkdir()
    (tmp_path / "stdlib" / "b.net").write_text(BLOCK)
    before = checkcache._package_hash(str(tmp_path))
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.pyc").write_bytes(b"\0")
    assert checkcache._package_hash(str(tmp_path)) == before
    (tmp_path / "stdlib" / "b.net").write_text("block b() { sigmoid }\n")
    assert checkcache._package_hash(str(tmp_path)) != before
    (tmp_path / "grammar.lark").write_text("start: 'a'\n")
    assert checkcache._package_hash(str(tmp_path)) != before


def test_a_changed_dependency_is_a_miss(cache, tree, capsys, monkeypatch):
    run(capsys, ["check", "main.net"])
    real = checkcache._dep_stat
    monkeypatch.setattr(checkcache, "_dep_stat",
                        lambda p: (0, 0, 0) if "lark" in p else real(p))  # as if reinstalled
    assert replay(capsys, ["check", "main.net"]) is None


# ---------------------------------------------------------------- what is never cached


def test_usage_errors_and_crashes_are_not_cached(cache, tree, capsys, monkeypatch):
    assert run(capsys, ["check", "main.net", "--limit", "bogus=1"])[2] == 2
    assert run(capsys, ["check", "main.net", "--import-path", "nowhere"])[2] == 2
    monkeypatch.setattr(cli_check, "run", lambda args: 1 / 0)
    assert run(capsys, ["check", "main.net"])[2] == 3
    assert entries(cache) == []


def test_output_that_bypasses_the_recording_is_not_cached(cache, tree, capsys, monkeypatch):
    def check(args):
        sys.stdout.buffer  # noqa: B018 - could write bytes the record would miss
        return 0

    monkeypatch.setattr(cli_check, "run", check)
    assert run(capsys, ["check", "main.net"])[2] == 0
    assert entries(cache) == []


# ---------------------------------------------------------------- a broken cache is no cache


@pytest.mark.parametrize("garbage", [b"", b"\x00garbage", None])
def test_a_corrupt_entry_is_a_miss_and_is_replaced(cache, tree, capsys, garbage):
    first = run(capsys, ["check", "main.net"])
    (entry,) = entries(cache)
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2] if garbage is None else garbage)
    assert replay(capsys, ["check", "main.net"]) is None
    assert run(capsys, ["check", "main.net"]) == first
    assert replay(capsys, ["check", "main.net"]) == first


@pytest.mark.parametrize("change", [
    lambda e: (*e[:4], [(1, b"bytes")], e[5]),   # output that is not text
    lambda e: (*e[:4], [(7, "x")], e[5]),        # a stream that is neither stdout nor stderr
    lambda e: (*e[:5], 2),                       # a status that is never kept
    lambda e: (e[0] + 1, *e[1:]),                # another format
    lambda e: e[:5],                             # a field missing
    lambda e: (*e[:2], [], *e[3:]),              # observed nothing, so checked nothing
    lambda e: (*e[:2], [t for t in e[2] if t[0] != "read"], *e[3:])])  # read no spec
def test_an_entry_of_the_right_key_but_the_wrong_shape_is_a_miss(cache, tree, capsys, change):
    import marshal

    run(capsys, ["check", "main.net"])
    (entry,) = entries(cache)
    data = cachedir.open_cache().read(entry.name, checkcache.MAX_ENTRY_BYTES)
    rewrite(entry, marshal.dumps(change(marshal.loads(data))))
    assert replay(capsys, ["check", "main.net"]) is None


def test_an_empty_cache_dir_turns_the_cache_off(tree, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("NETDSL_CACHE_DIR", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    first = run(capsys, ["check", "main.net"])
    assert first[2] == 0
    assert replay(capsys, ["check", "main.net"]) is None
    assert not (tmp_path / "home").exists() and not (tmp_path / "xdg").exists()


def test_an_unwritable_cache_dir_is_no_cache(tmp_path, tree, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("NETDSL_CACHE_DIR", str(blocker))  # a file: no directory under it
    cachedir.open_cache(fresh=True)
    assert run(capsys, ["check", "main.net"])[2] == 0
    assert replay(capsys, ["check", "main.net"]) is None


def test_the_cache_is_bounded_and_keeps_the_recently_used(cache, monkeypatch):
    monkeypatch.setattr(checkcache, "MAX_ENTRIES", 8)
    store = cachedir.open_cache()
    for i in range(12):
        p = cache / f"{i:02}.check"
        p.write_bytes(b"x")
        os.utime(p, ns=(i * 10**9, i * 10**9))
    checkcache._prune(store)
    left = sorted(p.name for p in cache.glob("*.check"))
    assert len(left) <= 8 and left[-1] == "11.check" and "00.check" not in left
    monkeypatch.setattr(checkcache, "MAX_BYTES", 10)
    big = cache / "99.check"
    big.write_bytes(b"x" * 20)
    checkcache._prune(store)
    assert sum(p.stat().st_size for p in cache.glob("*.check")) <= 10


# ---------------------------------------------------------------- differential: hit == miss == plain


def _fixture_argv(fx):
    argv = ["check", fx.name]
    for k, v in fx.limits.items():
        argv += ["--limit", f"{k}={v}"]
    for k, v in fx.overrides.items():
        argv += ["--set", f"{k}={v}"]
    return argv


CASES = ([(str(ROOT / "specs"), ["check", p.name, *allow_args(p)]) for p in SPECS]
         + [(str(ROOT / "specs"), ["check", "lenet5.net", "--format", "json", "--depth", "1"])]
         + [(str(errors_doc.FIXTURES), _fixture_argv(fx)) for fx in errors_doc.fixtures()])


@pytest.mark.slow
def test_every_shipped_spec_and_error_fixture_replays_as_it_ran(cache, capsys, monkeypatch):
    """For each case: the plain run (--no-cache), the recorded miss and the hit print the
    same bytes and exit alike."""
    statuses = set()
    for cwd, argv in CASES:
        monkeypatch.chdir(cwd)
        plain = run(capsys, [*argv, "--no-cache"])
        miss = run(capsys, argv)
        hit = replay(capsys, argv)
        assert miss == plain, argv
        if "--allow-module" in argv:
            # A shipped spec with an extern checks under its grant: never answered from the
            # cache, though the same spec was checked twice here (the memo replays it).
            assert miss[2] == 0 and hit is None, argv
        elif miss[2] in (0, 1):
            assert hit == miss, argv
        else:
            assert hit is None, argv
        statuses.add(miss[2])
    assert statuses == {0, 1}


# ---------------------------------------------------------------- as a user runs it


DRIVER = ("import sys\nfrom netdsl.cli import main\ns = main()\n"
          "open(sys.argv[0] + '.modules', 'w').write(' '.join(sys.modules))\nsys.exit(s)\n")


@pytest.mark.slow
@pytest.mark.parametrize("text", [SPEC, BAD])
def test_a_hit_in_a_new_process_imports_none_of_the_compiler(cache, tree, text):
    (tree / "main.net").write_text('import "blocks.net"\n' + text)
    driver = tree.parent / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    runs = [subprocess.run([sys.executable, str(driver), "check", "main.net"], capture_output=True,
                           cwd=tree, env=env, timeout=120) for _ in range(2)]
    first, second = runs
    assert (second.stdout, second.stderr, second.returncode) == \
        (first.stdout, first.stderr, first.returncode)
    assert first.returncode == (0 if text == SPEC else 1)
    loaded = set((tree.parent / "driver.py.modules").read_text().split())
    assert "netdsl.cli.checkcache" in loaded
    assert not loaded & {"pydantic", "lark", "netdsl.ir", "netdsl.syntax.parser", "netdsl.diagnostics"}


def test_the_json_output_of_a_hit_is_the_json_of_a_miss(cache, tree, capsys):
    miss = run(capsys, ["check", "main.net", "--format", "json"])
    hit = replay(capsys, ["check", "main.net", "--format", "json"])
    assert hit == miss and json.loads(hit[0])["network"] == "n"
