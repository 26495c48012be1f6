"""The VS Code extension folder (editors/vscode): its TextMate grammar says what
netdsl's grammar and catalogues say, every pattern compiles, a TextMate engine's
tokens of every shipped spec carry the scopes netdsl's lexer implies, every block
folds to its closing brace, and the extension's manifest, configuration, package
and script hold together."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from netdsl.check.evaluate import BUILTINS, INIT_SCHEMES
from netdsl.layers import LAYERS

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR_PATH = VSCODE / "syntaxes" / "netdsl.tmLanguage.json"
GRAMMAR = json.loads(GRAMMAR_PATH.read_text(encoding="utf-8"))
REPO = GRAMMAR["repository"]


def _lark_keywords() -> set[str]:
    """The words netdsl/syntax/grammar.lark quotes, read here independently of generate.py:
    keyword terminals (``IMPORT: "import"``) and words inlined in rules (``"or"``)."""
    text = (ROOT / "netdsl" / "syntax" / "grammar.lark").read_text(encoding="utf-8")
    code = re.sub(r"//[^\n]*", "", text)
    terminals = set(re.findall(r'^[A-Z_]+:\s*"([a-z_]+)"\s*$', code, re.M))
    assert {"import", "block", "network", "residual"} <= terminals, "the .lark layout changed"
    return terminals | set(re.findall(r'"([a-z_]+)"', code))


def _alternatives(pattern: str) -> set[str]:
    m = re.fullmatch(r"\\b\(([a-z_0-9|]+)\)\\b", pattern)
    assert m, f"not a word list: {pattern}"
    return set(m.group(1).split("|"))


def _patterns(node):
    """Every regex in the grammar, with where it sits."""
    if isinstance(node, dict):
        for key in ("match", "begin", "end"):
            if key in node:
                yield key, node[key]
        for value in node.values():
            yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def test_keywords_are_the_lark_grammars():
    listed = set().union(*(_alternatives(p["match"]) for p in REPO["keywords"]["patterns"]))
    assert listed == _lark_keywords()


def test_layers_functions_and_init_schemes_are_the_catalogues():
    assert _alternatives(REPO["layers"]["match"]) == set(LAYERS)
    # A word that is both (`sum`, a layer and the builtin sum(list)) is scoped as a layer.
    assert _alternatives(REPO["builtins"]["match"]) == set(BUILTINS) - set(LAYERS)
    assert _alternatives(REPO["init-schemes"]["match"]) == set(INIT_SCHEMES)


def test_the_checked_in_grammar_is_what_generate_writes():
    spec = importlib.util.spec_from_file_location("netdsl_vscode_generate", VSCODE / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert GRAMMAR_PATH.read_text(encoding="utf-8") == gen.render(), \
        "run: python editors/vscode/generate.py"
    assert gen.lark_keywords('IF: "if"  // "not" in a comment\n?x: a "or" b') == ["if", "or"]


def test_every_pattern_compiles_and_every_include_resolves():
    found = list(_patterns(GRAMMAR))
    assert len(found) > 20
    for where, pattern in found:
        re.compile(pattern)  # Oniguruma reads these the same: no engine-only syntax
        assert "(?<" not in pattern.replace("(?<=", "").replace("(?<!", ""), (where, pattern)
    includes = re.findall(r'"include": "#([\w-]+)"', GRAMMAR_PATH.read_text())
    assert includes and set(includes) <= set(REPO)


def _find(rule: str, text: str) -> list[str]:
    return [m.group(1 if m.re.groups else 0) for m in re.finditer(REPO[rule]["match"], text, re.M)]


def test_labels_numbers_and_words_match_what_they_should():
    assert _find("label", "    conv1: conv2d(64, 7)\n{ bn: batchnorm2d }; act: relu") == ["conv1", "bn", "act"]
    assert _find("label", "    x = y[1:2]\n    a if b else c\n    conv2d(3, 1)") == []
    numbers = re.compile(REPO["number"]["match"])
    assert numbers.findall("conv2d(64, 3, eps = 1e-5, p = .5, w = 1.25) relu6") == ["64", "3", "1e-5", ".5", "1.25"]
    control = next(p["match"] for p in REPO["keywords"]["patterns"] if p["name"] == "keyword.control.netdsl")
    assert re.findall(control, "for i in range(n) { in_channels inputs if x else y }") == \
        ["for", "in", "if", "else"]
    assert _find("layers", "relu6 relu conv2d conv2d_x") == ["relu6", "relu", "conv2d"]



def _rules(node: dict) -> list[dict]:
    """The match and begin rules among ``node``'s patterns, in order, includes resolved."""
    found = []
    for child in node.get("patterns", []):
        while "include" in child:
            child = REPO[child["include"].removeprefix("#")]
        found.extend([child] if "match" in child or "begin" in child else _rules(child))
    return found


def _tokenize(line: str) -> list[tuple[str, str]]:
    """One line as a TextMate engine tokenizes it: ``(text, innermost scope)`` pairs, ``""``
    where no rule names the text (split there into words and marks), spaces left out. At
    each position the rule whose match starts first wins, the first listed on a tie; inside
    a begin/end rule its end wins a tie. A string ends on its line, so a line of a spec
    needs nothing carried over from the lines above."""
    painted: list[tuple[str, ...]] = [()] * len(line)

    def paint(m, base, name, captures):
        outer = base + ((name,) if name else ())
        painted[m.start():m.end()] = [outer] * (m.end() - m.start())
        for group, cap in captures.items():
            if m.start(int(group)) >= 0:
                a, b = m.span(int(group))
                painted[a:b] = [outer + (cap["name"],)] * (b - a)
        return outer

    stack: list[tuple[dict, tuple[str, ...]]] = [(GRAMMAR, ())]
    pos = 0
    while pos < len(line):
        rule, base = stack[-1]
        best = None
        for candidate in _rules(rule):
            m = re.compile(candidate.get("match") or candidate["begin"]).search(line, pos)
            if m and (best is None or m.start() < best[1].start()):
                best = candidate, m
        end = re.compile(rule["end"]).search(line, pos) if "end" in rule else None
        if end and (best is None or end.start() <= best[1].start()):
            painted[pos:end.start()] = [base] * (end.start() - pos)
            paint(end, base, None, rule.get("endCaptures", {}))
            stack.pop()
            pos = end.end()
        elif best is None:
            painted[pos:] = [base] * (len(line) - pos)
            break
        else:
            candidate, m = best
            painted[pos:m.start()] = [base] * (m.start() - pos)
            if "begin" in candidate:
                stack.append((candidate, paint(m, base, candidate.get("name"), candidate.get("beginCaptures", {}))))
            else:
                paint(m, base, candidate.get("name"), candidate.get("captures", {}))
            pos = max(m.end(), pos + (m.end() == pos))  # an empty match must not stall
    tokens: list[tuple[str, str]] = []
    for i, scopes in enumerate(painted):
        if i and scopes == painted[i - 1]:
            tokens[-1] = (tokens[-1][0] + line[i], tokens[-1][1])
        else:
            tokens.append((line[i], scopes[-1] if scopes else ""))
    return [piece for text, scope in tokens
            for piece in ([(text, scope)] if scope else [(word, "") for word in re.findall(r"\w+|\S", text)])]


PARAMETER, LABEL, NUMBER = "variable.parameter.netdsl", "entity.name.tag.label.netdsl", "constant.numeric.netdsl"


def test_the_tokenizer_reads_the_grammar_as_textmate_does():
    assert _tokenize('    conv1: conv2d(64, 7, name = "a {b} = c")  # d = e') == [
        ("conv1", LABEL), (":", "punctuation.separator.label.netdsl"), ("conv2d", "support.class.layer.netdsl"),
        ("(", ""), ("64", NUMBER), (",", "punctuation.separator.netdsl"), ("7", NUMBER),
        (",", "punctuation.separator.netdsl"), ("name", PARAMETER), ("=", "keyword.operator.netdsl"),
        ('"a ', "string.quoted.double.netdsl"), ("{", "punctuation.definition.template-expression.begin.netdsl"),
        ("b", "meta.template.expression.netdsl"), ("}", "punctuation.definition.template-expression.end.netdsl"),
        (" = c\"", "string.quoted.double.netdsl"), (")", ""), ("# d = e", "comment.line.number-sign.netdsl")]


def test_an_argument_name_is_an_argument_not_a_layer_or_keyword():
    # alexnet.net:4:37: `dropout` is a layer's name too; `init` in convnext.net a keyword.
    tokens = _tokenize("network alexnet(num_classes = 1000, dropout = 0.5) as AlexNet {")
    assert ("dropout", PARAMETER) in tokens and ("num_classes", PARAMETER) in tokens
    assert ("init", PARAMETER) in _tokenize("        layer_scale: scale(init = layer_scale)")
    assert ("stride", PARAMETER) in _tokenize("               stride = 2, dropout = dropout)")
    assert ("dropout", "support.class.layer.netdsl") in _tokenize("    dropout(p = dropout)")
    # Names before `=` that are no argument's, and `==`.
    assert ("weight", PARAMETER) not in _tokenize("    init conv2d.weight = ones")
    assert ("init", "keyword.other.netdsl") in _tokenize("    init conv2d.weight = ones")
    assert ("x", PARAMETER) not in _tokenize("    let x = 2")
    assert ("depth", PARAMETER) not in _tokenize("    relu if depth == 50 else gelu")


def test_the_word_after_reuse_is_a_label():
    assert _tokenize("    reuse relu") == [("reuse", "keyword.other.netdsl"), ("relu", LABEL)]


def test_the_entries_of_an_output_dict_are_labels():
    tokens = _tokenize('    output dict("0": p0, pool: pool, aux: x)')
    assert ("pool", LABEL) in tokens and ("aux", LABEL) in tokens
    assert ("pool", "") in tokens and ("x", "") in tokens  # the results they name are not
    assert _tokenize("    pool: pool)")[0] == ("pool", LABEL)  # an entry on a line of its own


def test_a_number_is_one_token_as_the_lexer_reads_it():
    tokens = _tokenize("    dropout(p = 1., q = 1.e-3, r = .5) * 2")
    assert [t for t, scope in tokens if scope == NUMBER] == ["1.", "1.e-3", ".5", "2"]
    assert [t for t, scope in _tokenize("conv2d x1.y 2x") if scope == NUMBER] == []


def _shipped_specs() -> list[Path]:
    return sorted([*(ROOT / "specs").glob("*.net"), *(ROOT / "netdsl" / "stdlib").glob("*.net")])


def _tokens_at(line: str) -> dict[tuple[int, str], str]:
    """``_tokenize(line)`` keyed by each token's 1-based column and text."""
    found, at = {}, 0
    for text, scope in _tokenize(line):
        at = line.index(text, at)
        found[at + 1, text] = scope
        at += len(text)
    return found


def test_every_shipped_spec_scopes_arguments_labels_and_numbers():
    """Over every shipped spec, what netdsl's own lexer says is an argument name (a name
    before `=` inside parentheses), a `reuse` target, an `output` entry's label or a
    number gets that scope, as one token."""
    from netdsl.syntax.parser import _lark

    checked = {PARAMETER: 0, LABEL: 0, NUMBER: 0}
    for path in _shipped_specs():
        lines = path.read_text(encoding="utf-8").split("\n")
        tokenized = [_tokens_at(line) for line in lines]
        toks = list(_lark().lex("\n".join(lines)))
        depth, in_output = 0, False
        for before, tok, after in zip([None, *toks[:-1]], toks, [*toks[1:], None], strict=True):
            depth += tok.type == "LPAR"
            depth -= tok.type == "RPAR"
            in_output = (in_output or tok.type == "OUTPUT") and not (tok.type == "RPAR" and depth == 0)
            want = None
            word = re.fullmatch(r"[A-Za-z_]\w*", tok.value) is not None  # `init` in `scale(init = 1)` is INIT
            if word and after is not None and after.type == "EQUAL" and depth:
                want = PARAMETER
            elif word and before is not None and before.type == "REUSE":
                want = LABEL
            elif word and in_output and depth and after is not None and after.type == "COLON":
                want = LABEL
            elif tok.type == "NUMBER":
                want = NUMBER
            if want:
                where = f"{path.relative_to(ROOT)}:{tok.line}:{tok.column} {tok.value}"
                assert tokenized[tok.line - 1].get((tok.column, tok.value)) == want, where
                checked[want] += 1
    assert min(checked.values()) > 0, checked



def _folds(text: str, folding: dict) -> set[tuple[int, int]]:
    """The ranges VS Code folds ``text`` into when no language server gives any: those of
    its indentation provider (editor/contrib/folding, ``computeRanges``), which reads the
    language configuration's ``folding``. Each range is (its first line, its last line),
    1-based; folding it hides the lines after the first.

    Going up from the last line: a line indented less than the lines below it starts a
    range over them (blank lines included unless ``offSide``); a line matching
    ``markers.end`` is an end, and one matching ``markers.start`` ranges down to the
    nearest end below it, that line included. A line is a start or an end, never both:
    where both match, the match further left decides, as one regex alternation finds it.
    """
    markers = folding.get("markers")
    marker = re.compile(f"({markers['start']})|(?:{markers['end']})") if markers else None
    lines = text.split("\n")
    END = -2
    # [indent, its line, the line its range ends above]; the first entry is a sentinel.
    open_: list[list[int]] = [[-1, len(lines) + 1, len(lines) + 1]]
    found = set()
    for number in range(len(lines), 0, -1):
        line = lines[number - 1]
        blank = not line.strip(" \t")
        if blank:
            if folding.get("offSide"):
                open_[-1][2] = number
            continue
        indent = len(line[:len(line) - len(line.lstrip(" \t"))].expandtabs(4))
        m = marker.search(line) if marker else None
        if m and m.group(1) is None:
            open_.append([END, number, number])
            continue
        if m:
            end = next((i for i in range(len(open_) - 1, 0, -1) if open_[i][0] == END), None)
            if end is not None:
                del open_[end + 1:]
                found.add((number, open_[end][1]))
                open_[end] = [indent, number, number]
                continue
        if open_[-1][0] > indent:
            while open_[-1][0] > indent:
                open_.pop()
            if open_[-1][2] - 1 - number >= 1:
                found.add((number, open_[-1][2] - 1))
        if open_[-1][0] == indent:
            open_[-1][2] = number
        else:
            open_.append([indent, number, number])
    return found


def _brace_pairs(text: str) -> list[tuple[int, int, int]]:
    """Each ``{`` and its ``}`` as netdsl's lexer sees them (strings and comments left out):
    (the line the statement with the ``{`` starts on, the ``{``'s line, the ``}``'s line).
    A statement starts on the line of its ``{`` unless that line goes on a header whose
    parentheses opened on a line above."""
    from netdsl.syntax.parser import _lark

    pairs, opened, depth = [], [], 0
    continues: set[int] = set()  # lines that start inside ( ) or [ ]
    line = 0
    for tok in _lark().lex(text):
        if tok.line != line and depth:
            continues.add(tok.line)
        line = tok.line
        depth += (tok.type in ("LPAR", "LSQB")) - (tok.type in ("RPAR", "RSQB"))
        if tok.type == "LBRACE":
            start = tok.line
            while start in continues:
                start -= 1
            opened.append((start, tok.line))
        elif tok.type == "RBRACE":
            pairs.append((*opened.pop(), tok.line))
    return pairs


def _misfolded(text: str, folding: dict) -> list[tuple[int, int]]:
    """The ``{`` (start, ``{`` line) pairs over several lines that do not fold to their ``}``.

    A block folds from its statement's first line or its ``{``'s line, down to the line
    above its ``}``, or to the ``}`` itself where that line holds nothing else: a fold
    that hid a ``} else {`` line would hide the start of the next block."""
    folds = _folds(text, folding)
    lines = text.split("\n")
    wrong = []
    for start, brace, close in _brace_pairs(text):
        if close == brace:
            continue
        ends = {close - 1} | ({close} if re.fullmatch(r"\s*\}\s*(#.*)?", lines[close - 1]) else set())
        if not any((first, last) in folds for first in (start, brace) for last in ends):
            wrong.append((start, brace))
    return wrong


def test_every_block_of_every_shipped_spec_folds_to_its_closing_brace():
    config = json.loads((VSCODE / "language-configuration.json").read_text())
    checked = 0
    for path in _shipped_specs():
        text = path.read_text(encoding="utf-8")
        assert _misfolded(text, config["folding"]) == [], path.relative_to(ROOT)
        checked += len(_brace_pairs(text))
    assert checked > 150
    # What the test catches: markers that take `} else {` for a mere `}` (the old ones).
    spec = "network n() {\n    if a {\n        relu\n    } else {\n        gelu\n    }\n    relu\n}\n"
    old = {"markers": {"start": "\\{\\s*(#.*)?$", "end": "^\\s*\\}"}}
    assert _folds(spec, old) == {(1, 6), (2, 4)}
    assert sorted(_misfolded(spec, old)) == [(1, 1), (2, 2), (4, 4)]
    assert _folds(spec, config["folding"]) == {(1, 7), (2, 3), (4, 5)}


def test_the_extension_manifest_holds_together():
    pkg = json.loads((VSCODE / "package.json").read_text())
    (lang,) = pkg["contributes"]["languages"]
    assert lang["id"] == "netdsl" and lang["extensions"] == [".net"]
    (grammar,) = pkg["contributes"]["grammars"]
    assert grammar["language"] == "netdsl" and grammar["scopeName"] == GRAMMAR["scopeName"]
    for path in (lang["configuration"], grammar["path"], pkg["main"]):
        assert (VSCODE / path).is_file(), path
    config = json.loads((VSCODE / lang["configuration"]).read_text())
    assert config["comments"]["lineComment"] == "#"
    assert ["{", "}"] in config["brackets"] and ["(", ")"] in config["brackets"]
    assert {"open": "[", "close": "]"} in config["autoClosingPairs"]
    for pattern in [config["wordPattern"], *config["indentationRules"].values(),
                    *config["folding"].get("markers", {}).values()]:
        re.compile(pattern)
    assert re.fullmatch(config["wordPattern"], "in_channels")



def test_vsce_package_as_documented_ships_a_license_and_leaves_out_the_generator():
    import tomllib

    pkg = json.loads((VSCODE / "package.json").read_text())
    page = (ROOT / "docs" / "editors.md").read_text(encoding="utf-8")
    (command,) = re.findall(r"^.*vsce package.*$", page, re.M)
    # vsce warns of a manifest without a repository, unless told there is none to name.
    assert "repository" in pkg or "--allow-missing-repository" in command
    # The license vsce looks for beside the manifest: the one netdsl has.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pkg["license"] == pyproject["project"]["license"]["text"] == "MIT"
    assert (VSCODE / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")
    # .vscodeignore: globs, one a line, `#` a comment; the .vsix keeps what VS Code runs.
    globs = [g for g in (VSCODE / ".vscodeignore").read_text().splitlines() if g.strip() and not g.startswith("#")]
    (lang,), (grammar,) = pkg["contributes"]["languages"], pkg["contributes"]["grammars"]
    kept = [pkg["main"], lang["configuration"], grammar["path"], "package.json", "LICENSE",
            "node_modules/vscode-languageclient/package.json"]
    for path in (p.removeprefix("./") for p in kept):
        assert not any(fnmatch.fnmatch(path, g) for g in globs), path
    for path in ("generate.py", "tests/test_grammar.js", "syntaxes/__pycache__/x.pyc"):
        assert any(fnmatch.fnmatch(path, g) for g in globs), path


_NODE_HARNESS = r"""
const Module = require("module");
const calls = [];
const fakes = {
  vscode: {workspace: {getConfiguration: () => ({get: (key, d) => d})}},
  "vscode-languageclient/node": {LanguageClient: class {
    constructor(id, name, server, options) { calls.push({id, server, options}); }
    start() { return Promise.resolve(); }
    stop() { return Promise.resolve(); }
    dispose() {}
  }},
};
const load = Module._load;
const withClient = process.argv[3] === "with";
Module._load = function (request, ...rest) {
  if (request === "vscode") return fakes.vscode;
  if (request === "vscode-languageclient/node") {
    if (withClient) return fakes[request];
    throw new Error("Cannot find module " + request);
  }
  return load.call(this, request, ...rest);
};
const ext = require(process.argv[2]);
const context = {subscriptions: []};
ext.activate(context);
console.log(JSON.stringify({calls, subscriptions: context.subscriptions.length}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
@pytest.mark.parametrize("with_client", [True, False])
def test_the_extension_starts_netdsl_lsp_or_only_highlights(with_client, tmp_path):
    harness = tmp_path / "harness.js"
    harness.write_text(_NODE_HARNESS)
    r = subprocess.run(["node", str(harness), str(VSCODE / "extension.js"), "with" if with_client else "without"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if with_client:
        (call,) = out["calls"]
        assert call["server"] == {"command": "netdsl", "args": ["lsp"]}
        assert {"scheme": "file", "language": "netdsl"} in call["options"]["documentSelector"]
        assert out["subscriptions"] == 1
    else:
        assert out == {"calls": [], "subscriptions": 0}


def test_the_editors_page_matches_the_extension():
    import tomllib

    page = (ROOT / "docs" / "editors.md").read_text(encoding="utf-8")
    pkg = json.loads((VSCODE / "package.json").read_text())
    blocks = re.findall(r"^```(\w*)[^\n]*\n(.*?)^```$", page, re.S | re.M)  # ```sh no-run too
    for lang, body in blocks:
        if lang == "json":
            settings = json.loads(body)
            assert set(settings) <= set(pkg["contributes"]["configuration"]["properties"])
        elif lang == "toml":
            helix = tomllib.loads(body)
            assert helix["language-server"]["netdsl"]["args"] == ["lsp"]
    assert {"json", "toml", "lua"} <= {lang for lang, _ in blocks}
    # The folder name VS Code expects: publisher.name-version.
    assert f"{pkg['publisher']}.{pkg['name']}-{pkg['version']}" in page
    for key in re.findall(r"`(netdsl\.server\.\w+)", page):
        assert key in pkg["contributes"]["configuration"]["properties"], key
