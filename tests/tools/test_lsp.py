"""``netdsl lsp`` spoken to as an editor does: a real server process, JSON-RPC
with Content-Length framing over its stdin and stdout, every read under a
deadline so a broken server fails a test instead of hanging it (the client is
bench/lsp_client.py, which the fuzzer drives the server with too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import netdsl

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from lsp_client import TIMEOUT, Client, ServerError  # noqa: E402

SPEC = """\
block unit(c, stride = 1) {
    conv2d(c, 3, stride = stride, padding = 1)
    relu
}

network tiny() {
    input [3, 8, 8]
    stem: conv2d(4, 9)
    unit(4)

    flatten
}
"""
FIXED = SPEC.replace("conv2d(4, 9)", "conv2d(4, 3)")


@pytest.fixture
def client(tmp_path):
    pytest.importorskip("pygls")
    c = Client(tmp_path)
    caps = c.request("initialize", {"processId": os.getpid(), "rootUri": tmp_path.as_uri(),
                                    "capabilities": {}})["capabilities"]
    assert caps["hoverProvider"] and caps["definitionProvider"]
    assert "(" in caps["completionProvider"]["triggerCharacters"]
    c.notify("initialized", {})
    yield c
    c.close()


def _start(rng) -> tuple[int, int]:
    return rng["start"]["line"], rng["start"]["character"]


@pytest.mark.slow
def test_diagnostics_are_checks_at_the_same_position_and_clear_when_fixed(client, tmp_path):
    path = tmp_path / "tiny.net"
    path.write_text(SPEC)
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(str(path))
    (want,) = e.value.diagnostics
    uri = client.open(path)
    (got,) = client.diagnostics(uri, 1)
    assert got["code"] == want.code == "E0304"
    assert got["source"] == "netdsl" and got["severity"] == 1
    assert _start(got["range"]) == (want.span.line - 1, want.span.column - 1)
    assert got["range"]["end"] == {"line": want.span.end_line - 1, "character": want.span.end_column - 1}
    assert got["message"].startswith(want.message)
    assert want.label in got["message"] and f"help: {want.help}" in got["message"]

    client.change(uri, FIXED, 2)
    assert client.diagnostics(uri, 2) == []
    client.change(uri, FIXED.replace("relu\n", "reluu\n"), 3)
    assert [d["code"] for d in client.diagnostics(uri, 3)] == ["E0102"]


@pytest.mark.slow
def test_columns_are_counted_in_utf16_as_the_protocol_says(client, tmp_path):
    text = 'network n() {\n    input [3, 8, 8]\n    let e = "😀"; stem: conv2d(4, 9)\n}\n'
    uri = client.open(tmp_path / "u.net", text)
    (got,) = client.diagnostics(uri, 1)
    # netdsl's column 34 counts the emoji as one character; UTF-16 counts two units.
    assert _start(got["range"]) == (2, 34)


@pytest.mark.slow
def test_hover_shows_shapes_params_and_macs_of_the_line(client, tmp_path):
    uri = client.open(tmp_path / "tiny.net", FIXED)
    assert client.diagnostics(uri, 1) == []
    value = client.at("textDocument/hover", uri, 7, 10)["contents"]["value"]
    assert "`stem`" in value and "Conv2d" in value
    assert "[3, 8, 8] → [4, 6, 6]" in value
    assert "| 112 |" in value and "3,888" in value  # 4·3·3·3 + 4 params, 4·6·6 · 27 MACs
    # A line of a block shows its instance, named as in the state_dict.
    value = client.at("textDocument/hover", uri, 1, 6)["contents"]["value"]
    assert "`1.0`" in value and "[4, 6, 6] → [4, 6, 6]" in value and "148" in value
    value = client.at("textDocument/hover", uri, 8, 5)["contents"]["value"]
    assert "`1`" in value and "Unit" in value
    assert client.at("textDocument/hover", uri, 9, 0) is None  # a blank line
    assert client.at("textDocument/hover", uri, 400, 3) is None  # past the end


# A network whose check takes about a second: 15,000 convolutions.
SLOW = """\
network slow() {
    input [8, 8, 8]
    for i in range(150) {
        for j in range(100) {
            conv2d(8, 3, padding = 1)
        }
    }
}
"""


def _published(client, uri) -> list:
    """The versions of the diagnostics that have arrived for ``uri`` and not been read."""
    return [m["params"]["version"] for m in client.pending
            if m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == uri]


@pytest.mark.slow
def test_a_newer_change_replaces_the_check_of_an_older_one_and_requests_do_not_wait(client, tmp_path):
    uri = client.open(tmp_path / "tiny.net", FIXED)
    assert client.diagnostics(uri, 1) == []
    # Typed on while a long check runs: the versions in between are never published,
    # and completion and hover are answered from the last check without waiting for it.
    client.change(uri, SLOW, 2)
    client.change(uri, SLOW.replace("range(100)", "range(99)"), 3)
    items = client.at("textDocument/completion", uri, 4, 12)["items"]
    assert "conv2d" in {i["label"] for i in items}
    assert client.at("textDocument/hover", uri, 4, 12) is None  # a line of no version checked
    assert _published(client, uri) == []
    client.change(uri, FIXED.replace("relu\n", "reluu\n"), 4)
    assert [d["code"] for d in client.diagnostics(uri, 4)] == ["E0102"]
    assert _published(client, uri) == []


LIBRARY = """\
let widths = [4, 8]

block unit(c) {
    let mid = 2 * c
    conv2d(mid, 1)
}

network n() {
    input [3, 8, 8]
    init conv2d.weight = zeros
    for w in widths {
        unit(w)
    }
    stem: conv2d(4, 3)
}
"""
STALE = "*(from the last version that checked)*"


def _hover(client, uri, line, character=4):
    answer = client.at("textDocument/hover", uri, line, character)
    return answer and answer["contents"]["value"]


@pytest.mark.slow
def test_hover_on_headers_lets_and_inits_and_from_the_last_version_that_checked(client, tmp_path):
    uri = client.open(tmp_path / "n.net", LIBRARY)
    assert client.diagnostics(uri, 1) == []
    header = _hover(client, uri, 2, 7)
    assert "| `0` | Unit | [3, 8, 8] → [8, 8, 8] |" in header and "| `1` | Unit | [8, 8, 8] → [16, 8, 8] |" in header
    assert _hover(client, uri, 0) == "`widths` = `[4, 8]`"
    assert _hover(client, uri, 3) == "`mid` takes 2 values:\n\n- `8`\n- `16`"
    init = _hover(client, uri, 9)
    assert "this `init` sets 3 parameters with `zeros()`" in init
    assert "| `0.0.weight` | Conv2d |" in init and "| `stem.weight` | Conv2d |" in init
    assert "`stem` | Conv2d | [16, 8, 8] → [4, 6, 6]" in _hover(client, uri, 13)

    # An error above them: the lines that did not change answer as they did, marked as
    # such, a line below them where it went; the line with the error answers nothing.
    client.change(uri, LIBRARY.replace("    input [3, 8, 8]\n", "    input [3, 8, 8]\n    reluu\n"), 2)
    assert [d["code"] for d in client.diagnostics(uri, 2)] == ["E0102"]
    stale = _hover(client, uri, 14)
    assert stale.startswith(STALE + "\n\n") and "`stem` | Conv2d | [16, 8, 8] → [4, 6, 6]" in stale
    assert _hover(client, uri, 2, 7) == STALE + "\n\n" + header
    assert _hover(client, uri, 0) == STALE + "\n\n`widths` = `[4, 8]`"
    assert _hover(client, uri, 9) is None

    client.change(uri, LIBRARY.replace("conv2d(4, 3)", "conv2d(5, 3)"), 3)
    assert client.diagnostics(uri, 3) == []
    assert "`stem` | Conv2d | [16, 8, 8] → [5, 6, 6]" in _hover(client, uri, 13)
    assert not _hover(client, uri, 13).startswith(STALE)


@pytest.mark.slow
def test_a_document_over_the_size_limit_is_refused_without_reading_it_through(client, tmp_path):
    big = "network n() {\n    input [3, 8, 8]\n" + "    relu\n" * 60_000 + "    conv2d(8, \n"
    uri = client.open(tmp_path / "big.net", big)
    assert [d["code"] for d in client.diagnostics(uri, 1)] == ["E0401"]
    # Completion offers names, but not the arguments of the call it is in: finding the
    # call would read the text from its start on every keystroke.
    items = client.at("textDocument/completion", uri, 60_002, 14)["items"]
    assert "conv2d" in {i["label"] for i in items}
    assert [i for i in items if i["kind"] == 10] == []
    assert client.request("textDocument/formatting", {"textDocument": {"uri": uri},
                                                      "options": {"tabSize": 4, "insertSpaces": True}}) is None
    assert client.at("textDocument/hover", uri, 5, 5) is None


@pytest.mark.slow
def test_formatting_gives_what_netdsl_fmt_gives(client, tmp_path):
    from netdsl.syntax.fmt import format_text

    messy = "network n(){input [1,8,8];conv1:conv2d(4,3)  # stem\n relu}\n"
    uri = client.open(tmp_path / "messy.net", messy)
    edits = client.request("textDocument/formatting", {"textDocument": {"uri": uri},
                                                        "options": {"tabSize": 4, "insertSpaces": True}})
    assert len(edits) == 1 and edits[0]["newText"] == format_text(messy)
    assert edits[0]["range"]["start"] == {"line": 0, "character": 0}
    assert edits[0]["range"]["end"]["line"] >= messy.count("\n")
    tidy = client.open(tmp_path / "tidy.net", format_text(messy))
    assert client.request("textDocument/formatting", {"textDocument": {"uri": tidy},
                                                      "options": {"tabSize": 4, "insertSpaces": True}}) == []
    broken = client.open(tmp_path / "broken.net", "network n() {\n    conv2d(4,\n")
    assert client.request("textDocument/formatting", {"textDocument": {"uri": broken},
                                                      "options": {"tabSize": 4, "insertSpaces": True}}) is None


@pytest.mark.slow
def test_definition_of_a_block_here_and_across_an_import(client, tmp_path):
    uri = client.open(tmp_path / "tiny.net", FIXED)
    loc = client.at("textDocument/definition", uri, 8, 6)
    assert loc["uri"] == uri and _start(loc["range"]) == (0, 6)

    (tmp_path / "lib").mkdir()
    lib = tmp_path / "lib" / "blocks.net"
    lib.write_text("# blocks\n\nblock double(c) {\n    conv2d(2 * c, 1)\n}\n")
    main = tmp_path / "main.net"
    main.write_text('import "lib/blocks.net"\n\nnetwork m() {\n    input [3, 8, 8]\n    double(4)\n}\n')
    muri = client.open(main)
    assert client.diagnostics(muri, 1) == []
    loc = client.at("textDocument/definition", muri, 4, 6)
    assert loc["uri"] == lib.resolve().as_uri() and _start(loc["range"]) == (2, 6)
    # On the import itself: the imported file.
    loc = client.at("textDocument/definition", muri, 0, 10)
    assert loc["uri"] == lib.resolve().as_uri()
    assert client.at("textDocument/definition", muri, 3, 5) is None  # `input` is a keyword


@pytest.mark.slow
def test_an_error_in_an_imported_file_shows_on_its_import(client, tmp_path):
    lib = tmp_path / "lib.net"
    lib.write_text("block bad(c) {\n    conv2d(c, 3)\n    reluu\n}\n")
    main = tmp_path / "main.net"
    main.write_text('# uses lib\nimport "lib.net"\nnetwork m() {\n    input [3, 8, 8]\n    bad(4)\n}\n')
    uri = client.open(main)
    (got,) = client.diagnostics(uri, 1)
    assert got["code"] == "E0102" and _start(got["range"]) == (1, 0)
    assert "lib.net:3:5" in got["message"]
    (related,) = got["relatedInformation"]
    assert related["location"]["uri"] == lib.resolve().as_uri()
    assert _start(related["location"]["range"]) == (2, 4)


@pytest.mark.slow
def test_completion_of_layers_blocks_and_their_arguments(client, tmp_path):
    uri = client.open(tmp_path / "tiny.net", FIXED)
    client.diagnostics(uri, 1)
    items = client.at("textDocument/completion", uri, 9, 4)["items"]
    labels = {i["label"] for i in items}
    assert {"conv2d", "batchnorm2d", "unit", "max"} <= labels
    assert "stride" not in labels

    typing = FIXED.replace("    flatten\n", "    conv2d(8, 3, \n")
    client.change(uri, typing, 2)
    assert client.diagnostics(uri, 2)  # half typed: an error, and completion still works
    items = client.at("textDocument/completion", uri, 10, 17)["items"]
    args = {i["label"]: i for i in items if i["kind"] == 10}  # Property
    # In the signature's order, as the editor sorts them; those given by position left out.
    assert list(args)[:3] == ["stride", "padding", "dilation"]
    assert sorted(args, key=lambda a: args[a]["sortText"])[:3] == ["stride", "padding", "dilation"]
    assert args["padding"]["insertText"] == "padding = "
    assert "unit" in {i["label"] for i in items}

    client.change(uri, FIXED.replace("    flatten\n", "    unit(4, \n"), 3)
    client.diagnostics(uri, 3)
    items = client.at("textDocument/completion", uri, 10, 12)["items"]
    assert [i["label"] for i in items if i["kind"] == 10] == ["stride"]


TYPED = """\
block unit(c, stride = 1) {
    conv: conv2d(c, 3, stride = stride)
    act: relu
    reuse act
}

network tiny(width = 2) {
    input [3, 8, 8]
    let w = 4 * width
    init conv.weight = kaiming_normal()
    unit(w, stride = 1)
    conv2d(8, 3, bias = false)
}
"""


def _labels(client, uri, line, character, kind=None):
    items = client.at("textDocument/completion", uri, line, character)["items"]
    items = sorted(items, key=lambda i: i["sortText"])
    return [i["label"] for i in items if kind is None or i["kind"] == kind]


@pytest.mark.slow
def test_completion_knows_values_schemes_keywords_and_names_in_scope(client, tmp_path):
    uri = client.open(tmp_path / "t.net", TYPED)
    assert client.diagnostics(uri, 1) == []
    # After `bias = `: values, the default first, and no argument names.
    assert _labels(client, uri, 11, 24)[:2] == ["true", "false"]
    assert _labels(client, uri, 11, 24, kind=10) == []
    # After `stride = ` in a call of the block: its default, then the names in scope.
    got = _labels(client, uri, 10, 20)
    assert got[0] == "1" and {"w", "width"} <= set(got) and "conv2d" not in got
    # After `init conv.weight = `: the init schemes only, with their arguments.
    items = client.at("textDocument/completion", uri, 9, 23)["items"]
    assert {i["label"] for i in items} == {"kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform",
                                           "normal", "uniform", "trunc_normal", "constant", "zeros", "ones"}
    assert next(i for i in items if i["label"] == "kaiming_normal")["detail"] == \
        'kaiming_normal(a = 0.0, mode = "fan_in", nonlinearity = "leaky_relu")'
    # After `reuse `: the labels of the block.
    assert _labels(client, uri, 3, 10) == ["conv", "act"]
    # At a statement's start: keywords, layers, blocks and the names in scope (not the
    # block's names in the network).
    got = _labels(client, uri, 11, 4)
    assert {"residual", "let", "reuse", "conv2d", "unit", "w", "width"} <= set(got)
    assert "stride" not in got and "and" not in got
    assert got.index("unit") < got.index("conv2d") < got.index("residual")


@pytest.mark.slow
def test_signature_help_shows_the_argument_being_typed_and_its_default(client, tmp_path):
    uri = client.open(tmp_path / "t.net", TYPED)
    assert client.diagnostics(uri, 1) == []
    # Half typed: the text does not parse, and the blocks are those of the last that did.
    client.change(uri, TYPED.replace("    conv2d(8, 3, bias = false)\n", "    conv2d(8, 3, padding = \n"), 2)
    assert client.diagnostics(uri, 2)

    def help_at(line, character):
        return client.at("textDocument/signatureHelp", uri, line, character)

    got = help_at(11, 27)
    (sig,) = got["signatures"]
    assert sig["label"].startswith("conv2d(out_channels, kernel_size, stride = 1, padding = 0, ")
    assert got["activeParameter"] == 3 and sig["parameters"][3]["label"] == "padding = 0"
    assert help_at(11, 14)["activeParameter"] == 1  # on the second positional argument: kernel_size
    got = help_at(10, 9)  # in `unit(w, `: the block's own parameters
    assert got["signatures"][0]["label"] == "unit(c, stride = 1)" and got["activeParameter"] == 0
    assert help_at(7, 10) is None  # not in a call


@pytest.mark.slow
def test_the_server_survives_what_an_editor_may_send(client, tmp_path):
    uri = client.open(tmp_path / "bin.net", "network n() {\x00 }")
    assert [d["code"] for d in client.diagnostics(uri, 1)] == ["E0006"]
    deep = "network n() { input [1]\n" + "{" * 5000 + "\n"
    client.change(uri, deep, 2)
    assert [d["code"] for d in client.diagnostics(uri, 2)] == ["E0402"]
    for method in ("textDocument/hover", "textDocument/definition", "textDocument/completion"):
        client.at(method, uri, 0, 10_000)
        client.at(method, uri, 10_000, 0)
    # A document the server never saw, and a library of blocks with no network.
    assert client.at("textDocument/hover", "file:///nowhere/x.net", 0, 0) is None
    lib = client.open(tmp_path / "lib.net", "block b() { relu }\n")
    assert client.diagnostics(lib, 1) == []
    assert client.at("textDocument/hover", lib, 0, 12) is None
    assert client.request("shutdown", None) is None
    client.notify("exit", None)
    assert client.proc.wait(timeout=TIMEOUT) == 0


def test_lsp_without_pygls_says_how_to_install_it(tmp_path):
    # A sitecustomize that hides pygls, as on an install without the extra.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nclass _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in ('pygls', 'lsprotocol'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Hide())\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    r = subprocess.run([sys.executable, "-m", "netdsl", "lsp"], env=env, capture_output=True,
                       text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    # Commands that work from a clone: netdsl is not on PyPI, so `pip install 'netdsl[lsp]'` fails.
    assert "pip install 'pygls>=2'" in r.stderr and "pip install -e '.[lsp]'" in r.stderr
    assert "netdsl[" not in r.stderr


HINTED = """\
block unit(c, stride = 1) {
    conv2d(c, 3, stride = stride, padding = 1)
    relu
}

network tiny(n = 3) {
    input [3, 8, 8]
    stem: conv2d(4, 3)  # a stem
    unit(8, stride = 2)
    unit(16) * (n - 1)

    flatten
}
"""


def _hints(client, uri, first=0, last=100):
    got = client.request("textDocument/inlayHint", {"textDocument": {"uri": uri}, "range": {
        "start": {"line": first, "character": 0}, "end": {"line": last, "character": 0}}})
    return [(h["position"]["line"], h["position"]["character"], h["label"]) for h in got], got


def _initialize(tmp_path, capabilities):
    c = Client(tmp_path)
    caps = c.request("initialize", {"processId": os.getpid(), "rootUri": tmp_path.as_uri(),
                                    "capabilities": capabilities})["capabilities"]
    c.legend = caps.get("semanticTokensProvider", {}).get("legend")
    c.notify("initialized", {})
    return c


@pytest.mark.slow
def test_inlay_hints_give_each_lines_output_shape_and_a_repeat_count(tmp_path):
    client = _initialize(tmp_path, {"workspace": {"inlayHint": {"refreshSupport": True}}})
    try:
        uri = client.open(tmp_path / "tiny.net", HINTED)
        assert client.diagnostics(uri, 1) == []
        shown, raw = _hints(client, uri)
        # The server asked the editor to ask again once the check had ended (sent right
        # after the diagnostics, so before the answer to a later request).
        assert [m["method"] for m in client.asked] == ["workspace/inlayHint/refresh"]
        assert shown == [
            (1, 46, "[8, 3, 3] | [16, 3, 3]"),  # one shape per instance of the block
            (2, 8, "[8, 3, 3] | [16, 3, 3]"),
            (7, 22, "[4, 6, 6]"),  # before the comment
            (8, 23, "[8, 3, 3]"),
            (9, 22, "= 2"),  # the count, then what the line gives
            (9, 22, "[16, 3, 3]"),
            (11, 11, "[144]"),
        ]
        assert raw[0]["kind"] == 1 and raw[0]["paddingLeft"] is True and "kind" not in raw[4]
        assert raw[0]["tooltip"] == "network tiny, output of\n1.0: [8, 3, 3]\n2.0: [16, 3, 3]\n3.0: [16, 3, 3]"
        assert _hints(client, uri, 7, 8)[0] == [(7, 22, "[4, 6, 6]"), (8, 23, "[8, 3, 3]")]

        # An error: the lines that did not change keep their hints where they moved to,
        # marked as from the last version that checked; the changed line has none.
        client.change(uri, HINTED.replace("    input [3, 8, 8]\n", "    input [3, 8, 8]\n    reluu\n")
                      .replace("(4, 3)", "(4, 3 )"), 2)
        assert [d["code"] for d in client.diagnostics(uri, 2)] == ["E0102"]
        shown, raw = _hints(client, uri)
        assert shown == [(1, 46, "[8, 3, 3] | [16, 3, 3]"), (2, 8, "[8, 3, 3] | [16, 3, 3]"),
                         (9, 23, "[8, 3, 3]"), (10, 22, "= 2"), (10, 22, "[16, 3, 3]"), (12, 11, "[144]")]
        assert all(h["tooltip"].startswith(STALE) for h in raw)

        client.change(uri, HINTED.replace("n = 3", "n = 4"), 3)
        assert client.diagnostics(uri, 3) == []
        assert (9, 22, "= 3") in _hints(client, uri)[0]
    finally:
        client.close()


OUTLINED = """\
let widths = [4, 8]

block unit(c, stride = 1) {
    residual {
        conv: conv2d(c, 3, stride = stride, padding = 1)
    } shortcut proj if stride != 1 or in_channels != c {
        conv2d(c, 1, stride = stride)
    }
}

network tiny() {
    input [3, 8, 8]
    let w = 2
    for i in range(2) {
        "stage{i + 1}": {
            unit(widths[i] * w)
            act: relu
        }
    }
    fc: flatten
}
"""


def _tree(symbols) -> list:
    return [(s["name"], s["kind"], s["range"]["start"]["line"], s["range"]["end"]["line"],
             _tree(s.get("children") or [])) for s in symbols]


@pytest.mark.slow
def test_document_symbols_nest_as_the_specs_scopes_do(client, tmp_path):
    uri = client.open(tmp_path / "tiny.net", OUTLINED)
    assert client.diagnostics(uri, 1) == []
    got = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    # Module 2, Class 5, Variable 13, Namespace 3, Field 8: `for`, `residual` and the
    # unlabelled statements add no level; the shortcut's and the group's labels do.
    assert _tree(got) == [
        ("widths", 13, 0, 0, []),
        ("unit", 5, 2, 8, [("conv", 8, 4, 4, []), ("proj", 3, 5, 7, [])]),
        ("tiny", 2, 10, 20, [("w", 13, 12, 12, []),
                             ('"stage{i + 1}"', 3, 14, 17, [("act", 8, 16, 16, [])]),
                             ("fc", 8, 19, 19, [])]),
    ]
    unit = got[1]
    assert unit["selectionRange"] == {"start": {"line": 2, "character": 6}, "end": {"line": 2, "character": 10}}
    assert unit["range"]["start"] == {"line": 2, "character": 0} and unit["range"]["end"]["character"] == 1
    assert unit["children"][0]["detail"] == "conv2d(c, 3, stride = stride, padding = 1)"

    # Half typed, the text does not parse: the outline of the last text that did, on
    # the lines that did not change, where they are now.
    client.change(uri, OUTLINED.replace("    fc: flatten\n", "    conv2d(8,\n    fc: flatten\n"), 2)
    assert client.diagnostics(uri, 2)
    got = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    assert [(s["name"], s["range"]["end"]["line"]) for s in got] == [("widths", 0), ("unit", 8), ("tiny", 21)]
    assert got[2]["children"][-1]["name"] == "fc" and got[2]["children"][-1]["range"]["start"]["line"] == 20


@pytest.mark.slow
def test_workspace_symbols_come_from_open_documents_imports_and_the_folder(client, tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.net").write_text("# blocks\nblock double(c) {\n    conv2d(2 * c, 1)\n}\n")
    (tmp_path / "other.net").write_text("let depth = 3\nblock triple(c) { conv2d(3 * c, 1) }\n")
    (tmp_path / "broken.net").write_text("block half(c) {\n")
    std = "std/blocks.net"
    main = tmp_path / "main.net"
    text = f'import "lib/blocks.net"\nimport "{std}"\n\nblock quadruple(c) {{ double(2 * c) }}\n'
    uri = client.open(main, text)  # never saved: the editor's text counts
    client.diagnostics(uri, 1)

    def ask(query):
        return {(s["name"], s["kind"], s["location"]["uri"].rpartition("/")[2], s["location"]["range"]["start"]["line"])
                for s in client.request("workspace/symbol", {"query": query})}

    assert ask("rple") == {("quadruple", 5, "main.net", 3), ("triple", 5, "other.net", 1)}
    assert ask("dbl") == {("double", 5, "blocks.net", 1)}
    assert ask("DEPTH") == {("depth", 13, "other.net", 0)}
    assert ask("half") == set()  # a file that does not parse defines nothing
    # An imported file outside the folder: the standard library's blocks.
    assert any(uri_name == "blocks.net" and line > 1 for _, _, uri_name, line in ask(""))
    # A file changed on disk is read again.
    (tmp_path / "other.net").write_text("let depth = 3\n\nblock triple(c) { conv2d(3 * c, 1) }\n")
    assert ("triple", 5, "other.net", 2) in ask("triple")


def _apply(text: str, edit: dict) -> str:
    """``text`` with one protocol edit made (its characters are ASCII: any unit counts them)."""
    lines = text.split("\n")
    r = edit["range"]

    def offset(p):
        return sum(len(line) + 1 for line in lines[:p["line"]]) + p["character"]
    return text[:offset(r["start"])] + edit["newText"] + text[offset(r["end"]):]


FIXABLE = """\
network n() {
    input [3, 8, 8]
    conv2d(4, 3, bias = False)
    reluu
    fc: linear(10)
}
"""


@pytest.mark.slow
def test_quick_fixes_make_the_edit_the_help_proposes(client, tmp_path):
    uri = client.open(tmp_path / "n.net", FIXABLE)
    got = client.diagnostics(uri, 1)
    assert [d["code"] for d in got] == ["E0101", "E0102"]  # E0306 comes once the layers before check
    text, version, fixed = FIXABLE, 1, []
    wanted = {"E0101": ("change to `false`", "    conv2d(4, 3, bias = false)"),
              "E0102": ("change to `relu`", "    relu"), "E0306": ("add `flatten` before it", "    flatten")}
    while got:
        diagnostic = got[0]
        title, line = wanted[diagnostic["code"]]
        (action,) = client.request("textDocument/codeAction", {
            "textDocument": {"uri": uri}, "range": diagnostic["range"], "context": {"diagnostics": [diagnostic]}})
        assert action["title"] == title and action["kind"] == "quickfix" and action["isPreferred"] is True
        assert action["diagnostics"][0]["code"] == diagnostic["code"]
        (edit,) = action["edit"]["changes"][uri]
        before = text.split("\n")
        text, version = _apply(text, edit), version + 1
        assert line in text.split("\n") and line not in before
        client.change(uri, text, version)
        got = client.diagnostics(uri, version)
        fixed.append(diagnostic["code"])
        assert diagnostic["code"] not in [d["code"] for d in got]
    assert fixed == ["E0101", "E0102", "E0306"]
    assert text == FIXABLE.replace("False", "false").replace("reluu", "relu").replace("    fc", "    flatten\n    fc")
    # A line with no fixable diagnostic offers none; a range over two, both.
    assert _actions(client, uri, (1, 0), (1, 5)) == []
    client.change(uri, FIXABLE, version + 1)
    client.diagnostics(uri, version + 1)
    assert [a["title"] for a in _actions(client, uri, (2, 0), (3, 9))] == ["change to `false`", "change to `relu`"]


def _actions(client, uri, start, end):
    return client.request("textDocument/codeAction", {"textDocument": {"uri": uri}, "range": {
        "start": {"line": start[0], "character": start[1]}, "end": {"line": end[0], "character": end[1]}},
        "context": {"diagnostics": []}})


NAMED = """\
let base = 8

block unit(c, stride = 1) {
    conv: conv2d(c, 3, stride = stride, padding = 1)
    act: relu
    reuse act
}

network tiny(width = 2) {
    input [3, 8, 8]
    init conv.weight = zeros
    stem: conv2d(base * width, 3, padding = 1) -> skip
    unit(base * width, stride = 1) -> out
    add(skip, out)
}
"""


def _refs(client, uri, line, character, declaration=True):
    got = client.request("textDocument/references", {
        "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
        "context": {"includeDeclaration": declaration}})
    return got and sorted(_start(r["range"]) + (r["range"]["end"]["character"],) for r in got)


def _rename(client, uri, line, character, new):
    return client.request("textDocument/rename", {
        "textDocument": {"uri": uri}, "position": {"line": line, "character": character}, "newName": new})


@pytest.mark.slow
def test_references_follow_the_specs_scopes(client, tmp_path):
    uri = client.open(tmp_path / "n.net", NAMED)
    assert client.diagnostics(uri, 1) == []
    # A block's parameter: its uses in the block, and the keyword of a call to the block.
    assert _refs(client, uri, 2, 15) == [(2, 14, 20), (3, 32, 38), (12, 23, 29)]
    assert _refs(client, uri, 12, 24, declaration=False) == [(3, 32, 38), (12, 23, 29)]
    # A label: `reuse` of it, and an `init` of the network that reaches into the block.
    assert _refs(client, uri, 5, 11) == [(4, 4, 7), (5, 10, 13)]
    assert _refs(client, uri, 3, 5) == [(3, 4, 8), (10, 9, 13)]
    # A named result, a top-level let, a block.
    assert _refs(client, uri, 13, 9) == [(11, 50, 54), (13, 8, 12)]
    assert _refs(client, uri, 0, 5) == [(0, 4, 8), (11, 17, 21), (12, 9, 13)]
    assert _refs(client, uri, 12, 5) == [(2, 6, 10), (12, 4, 8)]
    assert _refs(client, uri, 11, 12) is None  # `conv2d` is a layer kind, not a name of the spec
    # The same places highlighted, the definition as written to (kind 3), the rest as read (2).
    got = client.at("textDocument/documentHighlight", uri, 13, 9)
    assert [(_start(h["range"]), h["kind"]) for h in got] == [((11, 50), 3), ((13, 8), 2)]


@pytest.mark.slow
def test_rename_edits_every_reference_or_says_why_not(client, tmp_path):
    uri = client.open(tmp_path / "n.net", NAMED)
    assert client.diagnostics(uri, 1) == []
    prepared = client.request("textDocument/prepareRename", {
        "textDocument": {"uri": uri}, "position": {"line": 10, "character": 10}})
    assert prepared == {"range": {"start": {"line": 10, "character": 9}, "end": {"line": 10, "character": 13}},
                        "placeholder": "conv"}
    edit = _rename(client, uri, 10, 10, "conv1")
    text = NAMED
    for e in sorted(edit["changes"][uri], key=lambda e: _start(e["range"]), reverse=True):
        text = _apply(text, e)
    assert text == NAMED.replace("conv:", "conv1:").replace("init conv.", "init conv1.")
    client.change(uri, text, 2)
    assert client.diagnostics(uri, 2) == []

    # Refused, with the reason the editor shows: a name taken in scope (renaming `width` to
    # `base` would make `base * width` read the parameter twice), a keyword, not a name.
    for line, character, new, reason in [(8, 14, "base", "already a name in scope"),
                                         (8, 14, "for", "keyword"), (8, 14, "2x", "not a name"),
                                         (11, 12, "conv3d", "no name to rename here")]:
        with pytest.raises(ServerError) as e:
            _rename(client, uri, line, character, new)
        assert e.value.args[0]["code"] == -32803 and reason in e.value.args[0]["message"]

    # A label of a reference spec netdsl ships: its state_dict keys are the reference's.
    shipped = client.open(ROOT / "specs" / "resnet.net")
    client.diagnostics(shipped, 1)
    with pytest.raises(ServerError) as e:
        client.request("textDocument/prepareRename", {
            "textDocument": {"uri": shipped}, "position": {"line": 64, "character": 6}})
    assert "state_dict" in e.value.args[0]["message"]
    # Its parameters and blocks change no key: those it renames.
    edit = _rename(client, shipped, 43, 17, "layers")
    assert len(edit["changes"][shipped]) == 8


def _decode(data: list[int], legend: dict) -> list[tuple]:
    """The protocol's relative encoding back to (line, start, length, type, modifiers)."""
    out, line, start = [], 0, 0
    for i in range(0, len(data), 5):
        dl, ds, length, typ, mods = data[i:i + 5]
        line, start = line + dl, (start + ds if dl == 0 else ds)
        out.append((line, start, length, legend["tokenTypes"][typ],
                    tuple(m for b, m in enumerate(legend["tokenModifiers"]) if mods >> b & 1)))
    return out


@pytest.mark.slow
def test_semantic_tokens_class_each_word_by_what_it_names(tmp_path):
    client = _initialize(tmp_path, {})
    try:
        text = NAMED.replace("let base = 8\n", 'let base = 8\nlet e = "😀"; let f = e  # 😀\n')
        uri = client.open(tmp_path / "n.net", text)
        assert client.diagnostics(uri, 1) == []
        got = _decode(client.request("textDocument/semanticTokens/full", {"textDocument": {"uri": uri}})["data"],
                      client.legend)
        at = {(line, start): (length, typ, mods) for line, start, length, typ, mods in got}
        assert at[(0, 0)] == (3, "keyword", ())
        assert at[(0, 4)] == (4, "variable", ("declaration",))
        assert at[(1, 8)] == (4, "string", ())  # the emoji counts two UTF-16 units
        assert at[(1, 14)] == (3, "keyword", ()) and at[(1, 22)] == (1, "variable", ())
        assert at[(1, 25)] == (4, "comment", ())
        assert at[(3, 6)] == (4, "class", ("declaration",))  # block unit
        assert at[(3, 11)] == (1, "parameter", ("declaration",))
        assert at[(4, 4)] == (4, "property", ("declaration",))  # the label conv
        assert at[(4, 10)] == (6, "function", ("defaultLibrary",))  # conv2d
        assert at[(4, 23)] == (6, "parameter", ())  # the argument name stride
        assert at[(11, 9)] == (4, "property", ())  # init conv.weight: the label
        assert at[(12, 47)] == (2, "operator", ()) and at[(12, 50)] == (4, "variable", ("declaration",))  # -> skip
        assert at[(13, 4)] == (4, "class", ())  # unit, used
    finally:
        client.close()


@pytest.mark.slow
def test_a_change_on_disk_to_an_imported_file_checks_its_importers_again(tmp_path):
    client = _initialize(tmp_path, {"workspace": {"didChangeWatchedFiles": {"dynamicRegistration": True}}})
    try:
        (tmp_path / "lib").mkdir()
        lib = tmp_path / "lib" / "blocks.net"
        lib.write_text("block double(c) {\n    conv2d(2 * c, 1)\n}\n")
        mid = tmp_path / "mid.net"
        mid.write_text('import "lib/blocks.net"\n')
        other = tmp_path / "other.net"
        other.write_text("block b() { relu }\n")
        main = client.open(tmp_path / "main.net", 'import "mid.net"\n\nnetwork m() {\n    input [3, 8, 8]\n'
                                                  '    double(4)\n}\n')
        alone = client.open(other)
        assert client.diagnostics(main, 1) == [] and client.diagnostics(alone, 1) == []
        # The server asked to be told of every spec file's changes.
        (reg,) = [m for m in client.asked if m["method"] == "client/registerCapability"]
        (registration,) = reg["params"]["registrations"]
        assert registration["method"] == "workspace/didChangeWatchedFiles"
        assert registration["registerOptions"]["watchers"] == [{"globPattern": "**/*.net"}]

        # A file imported through another changes on disk: the file importing it is
        # checked again, the file that does not import it is not.
        lib.write_text("block double(c) {\n    conv2d(2 * c, 1)\n    reluu\n}\n")
        client.notify("workspace/didChangeWatchedFiles", {"changes": [{"uri": lib.as_uri(), "type": 2}]})
        (got,) = client.diagnostics(main, 1)
        assert got["code"] == "E0102" and "blocks.net:3:5" in got["message"]
        lib.write_text("block double(c) {\n    conv2d(2 * c, 1)\n}\n")
        client.notify("workspace/didChangeWatchedFiles", {"changes": [{"uri": lib.as_uri(), "type": 2}]})
        assert client.diagnostics(main, 1) == []
        assert _published(client, alone) == []
    finally:
        client.close()


def test_the_server_never_imports_torch():
    # Its modules (and every feature module they load) stay light: an editor starts it often.
    pytest.importorskip("pygls")
    code = ("import sys, netdsl.tools.lsp as l; l.make_server(); "
            "import netdsl.tools.complete, netdsl.tools.tokens, netdsl.tools.refs, netdsl.tools.symbols; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fvcore')))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_label_of_a_shipped_spec_is_renamed_only_with_the_users_confirmation(tmp_path):
    # A client that can ask the user to confirm an edit gets the rename, annotated as
    # needing it; one that cannot is refused (test_rename_edits_every_reference_or_says_why_not).
    client = _initialize(tmp_path, {"workspace": {"workspaceEdit": {
        "documentChanges": True, "changeAnnotationSupport": {"groupsOnLabel": True}}}})
    try:
        uri = client.open(ROOT / "specs" / "resnet.net")
        client.diagnostics(uri, 1)
        prepared = client.request("textDocument/prepareRename", {
            "textDocument": {"uri": uri}, "position": {"line": 64, "character": 6}})
        assert prepared["placeholder"] == "conv1"
        edit = _rename(client, uri, 64, 6, "stem")
        (change,) = edit["documentChanges"]
        assert change["textDocument"] == {"uri": uri, "version": 1}
        assert [e["annotationId"] for e in change["edits"]] == ["state_dict"]
        assert change["edits"][0]["newText"] == "stem"
        note = edit["changeAnnotations"]["state_dict"]
        assert note["needsConfirmation"] is True and "state_dict" in note["description"]
        # A rename that changes no key needs no confirmation.
        assert "changes" in _rename(client, uri, 43, 17, "layers")
    finally:
        client.close()


@pytest.mark.slow
def test_references_to_an_imported_block_and_no_rename_of_it_here(client, tmp_path):
    lib = tmp_path / "blocks.net"
    lib.write_text("# blocks\nblock double(c) {\n    conv2d(2 * c, 1)\n}\n")
    text = 'import "blocks.net"\n\nnetwork m() {\n    input [3, 8, 8]\n    double(4)\n    double(8)\n}\n'
    uri = client.open(tmp_path / "main.net", text)
    assert client.diagnostics(uri, 1) == []
    got = client.request("textDocument/references", {"textDocument": {"uri": uri}, "position": {
        "line": 4, "character": 6}, "context": {"includeDeclaration": True}})
    assert [(r["uri"].rpartition("/")[2], _start(r["range"])) for r in got] == [
        ("blocks.net", (1, 6)), ("main.net", (4, 4)), ("main.net", (5, 4))]
    with pytest.raises(ServerError) as e:
        _rename(client, uri, 4, 6, "twice")
    assert "not defined in this file" in e.value.args[0]["message"] and "blocks.net:2:7" in e.value.args[0]["message"]


@pytest.mark.slow
def test_definition_of_parameters_lets_labels_and_results_and_none_in_comments(client, tmp_path):
    text = NAMED.replace("    add(skip, out)\n", "    add(skip, out)  # then unit again\n")
    uri = client.open(tmp_path / "n.net", text)
    assert client.diagnostics(uri, 1) == []

    def where(line, character):
        got = client.at("textDocument/definition", uri, line, character)
        return got and (got["uri"] == uri, _start(got["range"]))

    assert where(3, 33) == (True, (2, 14))  # `stride` in the block: its parameter
    assert where(12, 25) == (True, (2, 14))  # the keyword `stride` of a call to the block
    assert where(5, 11) == (True, (4, 4))  # `reuse act`: the label
    assert where(10, 10) == (True, (3, 4))  # `init conv.weight`: the label in the block
    assert where(13, 9) == (True, (11, 50))  # a named result read: where it is named
    assert where(11, 18) == (True, (0, 4))  # a top-level let
    assert where(12, 5) == (True, (2, 6))  # a block
    assert where(13, 30) is None  # `unit` in a comment


@pytest.mark.slow
def test_renaming_a_block_renames_it_in_the_open_files_that_import_it(client, tmp_path):
    lib = tmp_path / "blocks.net"
    lib_text = "block double(c) {\n    conv2d(2 * c, 1)\n}\n"
    lib.write_text(lib_text)
    main_text = 'import "blocks.net"\n\nnetwork m() {\n    input [3, 8, 8]\n    double(4)\n    double(8)\n}\n'
    main = client.open(tmp_path / "main.net", main_text)
    own = client.open(tmp_path / "own.net", 'import "blocks.net"\nblock double(c) { relu }\n'
                                            'network o() {\n    input [3, 8, 8]\n    double(4)\n}\n')
    lib_uri = client.open(lib, lib_text)
    for uri in (main, own, lib_uri):
        client.diagnostics(uri, 1)
    edit = _rename(client, lib_uri, 0, 7, "twice")
    changes = {u.rpartition("/")[2]: sorted(_start(e["range"]) for e in es) for u, es in edit["changes"].items()}
    # The file that defines its own `double` keeps it.
    assert changes == {"blocks.net": [(0, 6)], "main.net": [(4, 4), (5, 4)]}
    # A name the importer has already: refused, naming the file.
    with pytest.raises(ServerError) as e:
        _rename(client, lib_uri, 0, 7, "m")
    assert "main.net" in e.value.args[0]["message"]


@pytest.mark.slow
def test_externs_are_checked_only_under_the_editors_own_grant(tmp_path):
    # An extern is refused (E0121) as `check` refuses it without --allow-module; the
    # editor's initializationOptions.allowModules grants, as the flag does.
    pytest.importorskip("pygls")
    path = tmp_path / "ext.net"
    path.write_text('extern act = "torch.nn.Hardtanh"\nnetwork n() {\n    input [3, 8, 8]\n'
                    '    act(min_val = 0, max_val = 9)\n    conv2d(4, 99)\n}\n')
    # Refused, it leaves its output unknown, and what follows stays silent (no cascade).
    for options, codes in ((None, ["E0121"]), ({"allowModules": ["torch.nn"]}, ["E0304"]),
                           ({"allowModules": ["torch nn"]}, ["E0121"])):
        c = Client(tmp_path)
        init = {"processId": os.getpid(), "rootUri": tmp_path.as_uri(), "capabilities": {}}
        if options is not None:
            init["initializationOptions"] = options
        c.request("initialize", init)
        c.notify("initialized", {})
        try:
            uri = c.open(path)
            assert sorted(d["code"] for d in c.diagnostics(uri, 1)) == codes
        finally:
            c.close()
