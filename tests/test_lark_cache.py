"""The parser's table cache: a broken or unwritable cache never stops a parse."""

import pickle

import pytest

from netdsl import parser
from netdsl.lark_cache import cache_file

SPEC = "network n() { input [3, 8, 8]\n conv2d(4, 3) }"


@pytest.fixture
def fresh_parser(monkeypatch):
    """Each test builds the parser again under its own cache directory."""
    parser._lark.cache_clear()
    yield monkeypatch
    parser._lark.cache_clear()


def _written(tmp_path):
    return sorted(tmp_path.glob("lark-*.pickle"))


def test_tables_are_written_then_read_back(fresh_parser, tmp_path):
    fresh_parser.setenv("NETDSL_CACHE_DIR", str(tmp_path))
    first = parser.parse(SPEC)
    (path,) = _written(tmp_path)
    stamp = path.stat().st_mtime_ns
    parser._lark.cache_clear()
    assert parser.parse(SPEC) == first
    assert path.stat().st_mtime_ns == stamp  # loaded, not rebuilt


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"0" * 64 + b"\n" + pickle.dumps([1, 2])])
def test_a_corrupt_cache_is_rebuilt(fresh_parser, tmp_path, content):
    fresh_parser.setenv("NETDSL_CACHE_DIR", str(tmp_path))
    parser.parse(SPEC)
    (path,) = _written(tmp_path)
    good = path.read_bytes()
    path.write_bytes(content)
    parser._lark.cache_clear()
    assert parser.parse(SPEC).items[0].name == "n"
    assert path.read_bytes().split(b"\n", 1)[0] == good.split(b"\n", 1)[0]


def test_an_unusable_cache_directory_means_no_cache(fresh_parser, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    fresh_parser.setenv("NETDSL_CACHE_DIR", str(blocker / "cache"))
    assert cache_file("start: 'a'", {}) is False
    assert parser.parse(SPEC).items[0].name == "n"


def test_the_cache_can_be_turned_off(fresh_parser, tmp_path):
    fresh_parser.setenv("NETDSL_CACHE_DIR", "")
    fresh_parser.setenv("HOME", str(tmp_path))
    assert parser.parse(SPEC).items[0].name == "n"
    assert not list(tmp_path.rglob("lark-*.pickle"))


def test_an_edited_grammar_gets_its_own_file(fresh_parser, tmp_path):
    fresh_parser.setenv("NETDSL_CACHE_DIR", str(tmp_path))
    assert cache_file("start: 'a'", {}) != cache_file("start: 'b'", {})
