"""Diagrams: the graph derived from the IR agrees with the analysis, every construct
draws its edges, and the Mermaid and DOT texts are valid for any label."""

import html
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mermaid import mermaid_label, parse_mermaid
from shipped import grant_for

import netdsl
from netdsl.analysis import analyse
from netdsl.analysis.graph import Cluster, Diagram, Edge, Node, diagram, to_dot, to_mermaid
from netdsl.cli import main

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.net"))
NETS = {p.stem: netdsl.api.compile_spec(str(p), grant=grant_for(p)) for p in SPECS}


def _check_graph(d: Diagram, net) -> None:
    ids = [n.id for n in d.nodes]
    assert len(ids) == len(set(ids))
    by_id = {n.id: n for n in d.nodes}
    assert all(e.src in by_id and e.dst in by_id for e in d.edges)
    # Every node is reached from the input, and every node but an output leads on.
    succ: dict[str, list[str]] = {}
    for e in d.edges:
        succ.setdefault(e.src, []).append(e.dst)
    seen, todo = set(), [d.nodes[0].id]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += succ.get(n, [])
    assert seen == set(ids)
    assert all(n.role == "output" or n.id in succ for n in d.nodes)
    outputs = sorted(n.name for n in d.nodes if n.role == "output")
    assert outputs == sorted([*(net.result.keys if net.result else ["output"]), *net.outputs])
    clusters = {c.id for c in d.clusters}
    assert all(n.cluster is None or n.cluster in clusters for n in d.nodes)


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("depth", [1, 2, 3, None])
def test_the_diagram_of_every_shipped_spec_agrees_with_its_analysis(name, depth):
    net = NETS[name]
    d = diagram(net, depth=depth)
    _check_graph(d, net)
    rows = {r.name: r for r in analyse(net).rows}
    drawn = [n for n in d.nodes if n.role in ("layer", "module")]
    for n in drawn:  # each box is a module of the table, with its type and output shape
        assert (rows[n.name].type, rows[n.name].output_shape) == (n.type, n.shape), n.name
    names = Counter(n.name for n in drawn)
    assert max(names.values()) == 1
    visible = {r.name for r in rows.values() if depth is None or r.depth < depth}
    # A dotted label's container (Res2Net's `convs`) holds modules its scope calls: no box.
    held = {r.name for r in rows.values() if r.type == "Container" and r.output_shape == ()}
    # What is drawn is what the table shows at that depth: its leaves as boxes, the
    # rest as the boxes around them.
    assert set(names) == {r for r in visible if not any(s.startswith(r + ".") for s in visible)}
    assert {c.label.split(":")[0] for c in d.clusters} == visible - set(names) - held


def _edges_into(d, node_id):
    return [e for e in d.edges if e.dst == node_id]


def test_a_residual_adds_the_body_to_its_input_or_its_shortcut():
    d = diagram(NETS["resnet50"], depth=3)
    adds = [n for n in d.nodes if n.type == "add"]
    assert len(adds) == 16  # one per bottleneck
    for add in adds:
        kinds = sorted(e.kind for e in _edges_into(d, add.id))
        assert kinds == ["data", "skip"], kinds
    # The first block of each stage projects: its skip edge leaves the downsample box.
    by_id = {n.id: n for n in d.nodes}
    projected = [by_id[e.src].name for a in adds for e in _edges_into(d, a.id) if e.kind == "data"
                 and by_id[e.src].name.endswith("downsample")]
    skips = [by_id[e.src].name for a in adds for e in _edges_into(d, a.id) if e.kind == "skip"]
    assert sum(s.endswith(".downsample") for s in skips) == 4 and not projected


_SEVERAL = """
block fuse() {
    input x
    input skip
    from x
    c: conv2d(4, 1) -> y
    add(y, skip) -> s
    from s
    relu -> r
    output tuple(r, s)
}
network n() {
    input [4, 8, 8]
    a: conv2d(4, 1) -> a
    b: conv2d(4, 1) -> b
    from a, b
    f: fuse() -> r, s
    concat(r, s)
}
"""


@pytest.mark.parametrize("depth", [None, 1])
def test_a_block_of_several_tensors_reads_each_input_and_gives_each_output(depth):
    d = diagram(netdsl.compile(_SEVERAL), depth=depth)
    by_name = {n.name: n.id for n in d.nodes}
    into = lambda nid: sorted(next(n.name for n in d.nodes if n.id == e.src) for e in _edges_into(d, nid))  # noqa: E731
    cat = next(n.id for n in d.nodes if n.type == "concat")
    if depth is None:  # inside the block: `x` goes to its conv, `skip` to its add
        add = next(n.id for n in d.nodes if n.type == "add")
        assert into(by_name["f.c"]) == ["a"] and sorted(into(add)) == ["b", "f.c"]
        assert sorted(into(cat)) == ["", "f.relu"]  # relu's output, and the add's
    else:  # one box: both inputs in, both outputs out of it
        assert into(by_name["f"]) == ["a", "b"] and into(cat) == ["f", "f"]
    # `from a, a` draws one edge, not two
    once = diagram(netdsl.compile(_SEVERAL.replace("from a, b", "from a, a").replace(
        "b: conv2d(4, 1) -> b\n", "")), depth=1)
    box = next(n.id for n in once.nodes if n.name == "f")
    assert len(_edges_into(once, box)) == 1


def test_folded_modules_say_which_combinators_they_hide():
    d = diagram(NETS["resnet50"], depth=2)
    blocks = [n for n in d.nodes if n.type == "Bottleneck"]
    assert len(blocks) == 16 and {n.note for n in blocks} == {"residual"}
    assert "residual" in blocks[0].lines()
    inception = {n.name: n.note for n in diagram(NETS["inception_v3"], depth=1).nodes}
    assert inception["Mixed_5b"] == "concat" and inception["Conv2d_1a_3x3"] == ""


def test_concat_joins_every_branch_and_nested_concats_too():
    d = diagram(NETS["inception_v3"], depth=2)
    by_id = {n.id: n for n in d.nodes}
    cats = [n for n in d.nodes if n.type == "concat"]
    fan_in = Counter(len(_edges_into(d, c.id)) for c in cats)
    # 3 A (4 branches), B (3), 4 C (4), D (3), 2 E (4 branches, 2 nested concats of 2)
    assert fan_in == {4: 3 + 4 + 2, 3: 2, 2: 4}
    e = [c for c in cats if c.cluster and any(cl.id == c.cluster and cl.label.startswith("Mixed_7b:")
                                              for cl in d.clusters)]
    assert sorted(by_id[x.src].name for c in e for x in _edges_into(d, c.id)
                  if by_id[x.src].role != "op") == [
        "Mixed_7b.branch1x1", "Mixed_7b.branch3x3_2a", "Mixed_7b.branch3x3_2b",
        "Mixed_7b.branch3x3dbl_3a", "Mixed_7b.branch3x3dbl_3b", "Mixed_7b.branch_pool"]


def test_a_dense_layer_sees_the_input_and_every_earlier_layer():
    net = NETS["densenet121"]
    d = diagram(net, depth=3)
    by_id = {n.id: n for n in d.nodes}
    block = net.body[0].body[4].body[0]  # features.denseblock1's dense
    x = next(n for n in d.nodes if n.name == "features.pool0")
    # Each layer reads the running concatenation, which then takes on its output.
    acc = x
    for k in range(1, 7):
        layer = next(n for n in d.nodes if n.name == f"features.denseblock1.denselayer{k}")
        assert [by_id[e.src] for e in _edges_into(d, layer.id)] == [acc]
        [cat] = [by_id[e.dst] for e in d.edges if e.src == layer.id]
        assert sorted((by_id[e.src].id, e.kind) for e in _edges_into(d, cat.id)) == \
            sorted([(acc.id, "dense"), (layer.id, "data")])
        assert cat.type == "concat" and cat.shape == (64 + 32 * k, 56, 56)
        acc = cat
    assert acc.shape == block.out_shape


def test_every_shipped_diagram_is_within_mermaids_edge_limit():
    # GitHub's Mermaid refuses a chart of 500 edges or more (maxEdges): `netdsl graph`
    # folds the deeper modules of a network whose whole diagram has more.
    from netdsl.cli.graph import MERMAID_MAX_EDGES, mermaid_sized

    folded = []
    for net in NETS.values():
        if len(diagram(net).edges) >= MERMAID_MAX_EDGES:
            d, depth = mermaid_sized(net)
            assert len(d.edges) < MERMAID_MAX_EDGES and depth >= 1, net.name
            assert len(diagram(net, depth=depth + 1).edges) >= MERMAID_MAX_EDGES, net.name  # the deepest
            folded.append(net.name)
    assert "ecaresnet101d" in folded  # so that the folding itself is tested


def test_graph_folds_a_diagram_mermaid_cannot_draw_and_says_so(capsys):
    from netdsl.cli import main

    assert main(["graph", str(ROOT / "specs" / "ecaresnet101d.net")]) == 0
    out, err = capsys.readouterr()
    assert out.count("-->") < 500 and "folded modules below depth" in err and "--depth" in err
    assert main(["graph", str(ROOT / "specs" / "ecaresnet101d.net"), "--format", "dot"]) == 0
    out, err = capsys.readouterr()
    assert out.count("->") >= 500 and err == ""  # DOT has no such limit: everything


def test_a_gate_multiplies_its_input_by_the_body():
    d = diagram(NETS["efficientnet_b0"], depth=None)
    muls = [n for n in d.nodes if n.type == "mul"]
    assert len(muls) == 16  # one squeeze-and-excitation per MBConv
    by_id = {n.id: n for n in d.nodes}
    for m in muls:
        into = _edges_into(d, m.id)
        assert sorted(e.kind for e in into) == ["data", "gate"]
        body = next(by_id[e.src] for e in into if e.kind == "data")
        assert body.name.endswith("scale_activation")


def test_a_side_output_branches_off_and_the_main_flow_goes_on():
    d = diagram(NETS["inception_v3"], depth=1)
    by_id = {n.id: n for n in d.nodes}
    aux = by_id[next(e.dst for e in d.edges if e.kind == "side")]
    assert aux.name == "AuxLogits"
    [src] = [by_id[e.src] for e in d.edges if e.kind == "side"]
    assert src.name == "Mixed_6e"
    assert sorted(by_id[e.dst].name for e in d.edges if e.src == src.id) == ["AuxLogits", "Mixed_7a"]
    out = next(n for n in d.nodes if n.name == "aux_logits")
    assert out.role == "output" and out.shape == (1000,)


def test_a_construct_without_a_rule_is_refused_not_drawn_as_a_guess(monkeypatch):
    # tests/ir/test_walk.py holds every construct against the table; here, that a missing
    # entry is an error naming the construct, not a box of a made-up shape.
    from netdsl.analysis import graph

    monkeypatch.delitem(graph.CONSTRUCTS, "residual")
    assert not graph.handles("residual")
    with pytest.raises(KeyError, match="residual"):
        diagram(NETS["resnet34"], depth=3)


# ---------------------------------------------------------------- escaping

def _dot_tokens(text: str):
    """DOT's tokens, quoted strings read as Graphviz's lexer reads them (scan.l): `\\"` is
    a quote, `\\` + newline is nothing, every other backslash stays for the label."""
    token = re.compile(r'\s+|//[^\n]*|->|--|[{}\[\];,=:]|"((?:\\.|\\\n|[^"\\])*)"|'
                       r"[A-Za-z_\x80-\U0010ffff][\w\x80-\U0010ffff]*|-?(?:\.\d+|\d+(?:\.\d*)?)",
                       re.S)
    at = 0
    while at < len(text):
        m = token.match(text, at)
        assert m and m.end() > at, f"no DOT token at {text[at:at + 30]!r}"
        at = m.end()
        if m.group(0).isspace() or m.group(0).startswith("//"):
            continue
        if m.group(1) is not None:
            raw = re.sub(r'\\"', '"', m.group(1).replace("\\\n", ""))
            yield ("str", raw)
        else:
            t = m.group(0)
            yield (t if t in ("->", "--") or t in "{}[];,=:" else "id", t)


def _label(raw: str) -> list[str]:
    """The lines Graphviz shows for a label: its escString escapes, then HTML entities."""
    lines, cur, i = [], "", 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            assert nxt in "\\nlr", f"a backslash escape Graphviz would read: \\{nxt}"
            if nxt == "\\":
                cur += "\\"
            else:
                lines.append(cur)
                cur = ""
            i += 2
            continue
        assert c != "\\", "a lone backslash at the end"
        cur += c
        i += 1
    lines.append(cur)
    for line in lines:  # & only as an entity, so that no user text reads as one
        assert re.fullmatch(r"(?:[^&]|&amp;)*", line), line
    return [html.unescape(x) for x in lines]


def parse_dot(text: str) -> dict:
    """A small recursive-descent parser of the DOT grammar (graph, subgraph, node,
    edge and attribute statements): the labels of nodes and subgraphs, and the edges."""
    toks = list(_dot_tokens(text))
    pos = 0
    out = {"title": None, "nodes": {}, "clusters": [], "edges": []}

    def peek(k=0):
        return toks[pos + k] if pos + k < len(toks) else ("eof", "")

    def take(kind=None, value=None):
        nonlocal pos
        t = peek()
        assert kind is None or t[0] == kind, (t, kind)
        assert value is None or t[1] == value, (t, value)
        pos += 1
        return t

    def ident():
        t = take()
        assert t[0] in ("id", "str"), t
        return t

    def attrs():
        a = {}
        while peek()[0] == "[":
            take("[")
            while peek()[0] != "]":
                k = ident()[1]
                take("=")
                a[k] = ident()
                if peek()[0] in (",", ";"):
                    take()
            take("]")
        return a

    def stmts():
        labels = {}
        take("{")
        while peek()[0] != "}":
            t = peek()
            if t == ("id", "subgraph"):
                take()
                name = ident()[1]
                inner = stmts()
                out["clusters"].append((name, inner.get("label")))
            elif t[1] in ("graph", "node", "edge") and peek(1)[0] == "[":
                take()
                attrs()
            elif peek(1)[0] == "=":
                k = ident()[1]
                take("=")
                labels[k] = ident()
            else:
                chain = [ident()[1]]
                while peek()[0] == "->":
                    take()
                    chain.append(ident()[1])
                a = attrs()
                if len(chain) == 1:
                    out["nodes"][chain[0]] = a
                else:
                    out["edges"] += list(zip(chain, chain[1:], strict=False))  # consecutive pairs
            if peek()[0] == ";":
                take()
        take("}")
        return labels

    take("id", "digraph")
    out["title"] = ident()
    stmts()
    assert peek()[0] == "eof"
    return out


def _shown(text: str) -> str:
    # Characters that are not printable are shown as their escapes.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


labels = st.text(max_size=30)


def _labelled(names, cluster_labels, title) -> Diagram:
    d = Diagram(title)
    for i, label in enumerate(cluster_labels):
        d.clusters.append(Cluster(f"c{i}", label, f"c{i - 1}" if i else None))
    for i, name in enumerate(names):
        role = ("layer", "module", "op", "input", "output")[i % 5]
        cluster = f"c{i % len(cluster_labels)}" if cluster_labels and i % 2 else None
        d.nodes.append(Node(f"n{i}", role, name, name, (i, 3), name if i % 3 == 0 else "", cluster))
    d.edges += [Edge(f"n{i}", f"n{i + 1}", ("data", "skip", "dense", "gate", "side")[i % 5])
                for i in range(len(names) - 1)]
    return d


def _expected(d: Diagram) -> dict[str, list[str]]:
    return {n.id: [_shown(x) for x in n.lines()] for n in d.nodes}


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(labels, min_size=1, max_size=6), st.lists(labels, max_size=3), labels)
def test_any_label_gives_valid_dot_that_reads_back_as_the_label(names, cluster_labels, title):
    d = _labelled(names, cluster_labels, title)
    parsed = parse_dot(to_dot(d))
    assert _label(parsed["title"][1]) == [_shown(title)]
    assert {k: _label(v["label"][1]) for k, v in parsed["nodes"].items()} == _expected(d)
    assert [_label(lbl[1]) for _, lbl in parsed["clusters"]] == \
        [[_shown(c.label)] for c in reversed(d.clusters)]  # innermost first
    assert parsed["edges"] == [(e.src, e.dst) for e in d.edges]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(labels, min_size=1, max_size=6), st.lists(labels, max_size=3))
def test_any_label_gives_valid_mermaid_that_reads_back_as_the_label(names, cluster_labels):
    d = _labelled(names, cluster_labels, "t")
    parsed = parse_mermaid(to_mermaid(d))
    assert parsed["nodes"] == _expected(d)
    assert parsed["clusters"] == [[_shown(c.label) or " "] for c in d.clusters]
    assert parsed["edges"] == [(e.src, e.dst) for e in d.edges]


def test_the_checkers_refuse_what_would_break():
    # The parsers above are what the property tests lean on: each must fail on the
    # mistakes an escaper could make.
    with pytest.raises(AssertionError):
        parse_dot('digraph "t" { n0 [label="a"b"]; }')
    with pytest.raises(AssertionError):
        _label("a\\N")  # Graphviz would print the node's name here
    with pytest.raises(AssertionError):
        _label("a &amp b &lt;")
    with pytest.raises(AssertionError):
        parse_mermaid('flowchart TD\n  n0["a"b"]')
    with pytest.raises(AssertionError):
        mermaid_label("a #35 b")
    assert _label("a\\\\n&amp;\\nb") == ["a\\n&", "b"]
    assert mermaid_label("#34;x#35;<br/>y") == ['"x#', "y"]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(labels, min_size=1, max_size=4), st.lists(labels, max_size=2), labels)
def test_graphviz_draws_the_dot_of_any_label(names, cluster_labels, title):
    d = _labelled(names, cluster_labels, title)
    r = subprocess.run(["dot", "-Tsvg"], input=to_dot(d), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    texts = [html.unescape(t) for t in re.findall(r"<text[^>]*>(.*?)</text>", r.stdout, re.S)]
    for line in (x for lines in _expected(d).values() for x in lines):
        if line.strip() and "  " not in line:  # Graphviz trims and may collapse spaces
            assert any(line.strip() in t for t in texts), (line, texts)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_graphviz_draws_every_shipped_spec():
    for name, net in NETS.items():
        r = subprocess.run(["dot", "-Tsvg"], input=to_dot(diagram(net, depth=2)), capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0 and "<svg" in r.stdout, (name, r.stderr)


@pytest.mark.parametrize("label, shown", [("stufe_é漢", "stufe_é漢"),
                                          ('a{{\\"b\\"}}-é #1 <x>', 'a{"b"}-é #1 <x>')])
def test_spec_labels_reach_the_diagram_escaped(label, shown):
    try:
        net = netdsl.compile(f'network n() {{ input [3, 8, 8]\n "{label}": {{ conv2d(4, 1) }} }}')
    except netdsl.NetdslError as e:
        if e.diagnostics[0].code == "E0111" and label.isascii() is False and "{" in label:
            pytest.skip("labels are identifiers in this version of the language")
        raise
    d = diagram(net)
    assert d.clusters[0].label == f"{shown}: Sequential"
    assert parse_mermaid(to_mermaid(d))["clusters"] == [[f"{shown}: Sequential"]]
    assert _label(parse_dot(to_dot(d))["clusters"][0][1][1]) == [f"{shown}: Sequential"]


# ---------------------------------------------------------------- the command

def test_graph_prints_mermaid_by_default_and_dot_on_request(capsys):
    spec = str(ROOT / "specs" / "resnet50.net")
    assert main(["graph", spec, "--depth", "2"]) == 0
    assert capsys.readouterr().out == to_mermaid(diagram(NETS["resnet50"], depth=2)) + "\n"
    assert main(["graph", spec, "--format", "dot", "--set", "num_classes=10"]) == 0
    net = netdsl.api.compile_spec(spec, {"num_classes": "10"})
    assert capsys.readouterr().out == to_dot(diagram(net)) + "\n"


def test_graph_writes_to_a_file_and_never_over_the_spec(tmp_path, capsys):
    spec = tmp_path / "n.net"
    spec.write_text("network n() { input [1, 4, 4]\n relu }\n")
    out = tmp_path / "n.mmd"
    assert main(["graph", str(spec), "-o", str(out)]) == 0
    assert out.read_text().startswith("flowchart TD\n") and capsys.readouterr().out == ""
    assert main(["graph", str(spec), "-o", str(spec)]) == 2
    assert "is the spec; netdsl never writes over a spec" in capsys.readouterr().err
    assert spec.read_text().startswith("network n()")


FAKE_DOT = """#!/bin/sh
# A stand-in for Graphviz: it takes only -Tsvg and DOT on stdin.
[ "$#" -eq 1 ] && [ "$1" = "-Tsvg" ] || { echo "fake dot: bad arguments: $*" >&2; exit 9; }
input=$(cat)
case "$input" in
  digraph*) ;;
  *) echo "fake dot: not DOT" >&2; exit 8 ;;
esac
printf '<svg xmlns="http://www.w3.org/2000/svg"><!-- %s bytes --></svg>' "${#input}"
"""


def _fake_path(tmp_path, script: str | None) -> str:
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    if script is not None:
        (bin_ / "dot").write_text(script)
        (bin_ / "dot").chmod(0o755)
    return str(bin_)


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for dot")
def test_svg_runs_dot_from_the_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", _fake_path(tmp_path, FAKE_DOT) + os.pathsep + os.environ["PATH"])
    out = tmp_path / "r.svg"
    spec = str(ROOT / "specs" / "lenet5.net")
    assert main(["graph", spec, "--format", "svg", "-o", str(out)]) == 0, capsys.readouterr().err
    dot = to_dot(diagram(NETS["lenet5"]))
    svg, stamp = out.read_text().rstrip("\n").rsplit("\n", 1)  # written to a file: stamped (cli/files.py)
    assert svg == f'<svg xmlns="http://www.w3.org/2000/svg"><!-- {len(dot.encode())} bytes --></svg>'
    assert stamp.startswith("<!-- netdsl-sha256: ")


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for dot")
def test_a_dot_that_fails_is_reported_as_a_bug_not_a_traceback(tmp_path, monkeypatch, capsys):
    fake = "#!/bin/sh\necho 'syntax error in line 1' >&2\nexit 1\n"
    monkeypatch.setenv("PATH", _fake_path(tmp_path, fake) + os.pathsep + os.environ["PATH"])
    assert main(["graph", str(ROOT / "specs" / "lenet5.net"), "--format", "svg"]) == 3
    err = capsys.readouterr().err
    assert "syntax error in line 1" in err and "please report it" in err


def test_svg_without_graphviz_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", _fake_path(tmp_path, None))
    out = tmp_path / "r.svg"
    assert main(["graph", str(ROOT / "specs" / "lenet5.net"), "--format", "svg", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    for words in ("apt install graphviz", "brew install graphviz", "conda install graphviz",
                  "--format dot"):
        assert words in err
    assert not out.exists()


@pytest.mark.slow
def test_graph_does_not_import_torch():
    code = ("import sys; from netdsl.cli import main; "
            f"rc = main(['graph', {str(ROOT / 'specs' / 'inception_v3.net')!r}, '--format', 'dot']); "
            "assert rc == 0 and 'torch' not in sys.modules, rc")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr


def test_a_reused_module_is_a_box_per_call_and_a_function_is_an_op():
    d = diagram(NETS["resnet34"])  # each block calls its relu twice; flatten is applied
    calls = [n for n in d.nodes if n.role == "call"]
    assert len(calls) == 16 and all(n.name.endswith(".relu") and n.type == "ReLU" for n in calls)
    layers = {n.name for n in d.nodes if n.role == "layer"}
    assert all(n.name in layers for n in calls)  # the module it calls again is drawn too
    assert [n.lines() for n in d.nodes if n.role == "op" and n.type == "flatten"] == [["flatten", "[512]"]]
    parsed = parse_mermaid(to_mermaid(d))
    assert len(parsed["nodes"]) == len(d.nodes)


def test_named_results_are_wired_by_name_and_each_result_is_an_output():
    net = netdsl.compile("network n() { input [3, 8, 8]\n a: conv2d(4, 1)\n -> x\n"
                         " b: conv2d(4, 1)\n -> y\n add(x, y)\n -> z\n"
                         " output dict(s: z, t: x) }")
    d = diagram(net)
    by_id = {n.id: n for n in d.nodes}
    add = next(n for n in d.nodes if n.type == "add")
    assert sorted(by_id[e.src].name for e in _edges_into(d, add.id)) == ["a", "b"]
    outs = {n.name: [by_id[e.src].name for e in _edges_into(d, n.id)] for n in d.nodes if n.role == "output"}
    assert outs == {"s": [""], "t": ["a"]}
