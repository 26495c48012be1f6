"""The fuzzer reaches everything the pipeline has: every alternative of every grammar
rule and every terminal, every IR node class, every layer argument at the edges of
its type, ``reuse`` of every layer kind at other shapes, and every command of the
CLI, the files they write included. Each universe is listed from the code (the
grammar Lark builds, the IR's classes, the catalogue, the CLI's command table), so
a rule, a node, an argument or a command added without a generator fails here by
name. The harness's own judges are tested to fail too: a write without consent, a
link followed out of a tree, an error in the language server's log."""

from __future__ import annotations

import random
import re
import sys
from importlib import resources
from pathlib import Path

import pytest

import netdsl
from netdsl import ir
from netdsl.cli import COMMANDS
from netdsl.layers import LAYERS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import fuzz  # noqa: E402
import fuzz_commands  # noqa: E402
import fuzz_specs  # noqa: E402
from shipped import grant_for  # noqa: E402


def _counting_lark():
    """A Lark of netdsl's grammar, separate from the parser's own, that records each
    rule (one alternative) it reduces by."""
    from netdsl.syntax import lalr, parser

    grammar = resources.files("netdsl.syntax").joinpath("grammar.lark").read_text()
    options = dict(parser="lalr", lexer="contextual", start=["start", "expr"],
                   propagate_positions=True, maybe_placeholders=True)
    lark, _ = lalr.build_lark(grammar, parser._ParenNewlines(), options)
    seen: set = set()
    for rule, fn in list(lark._callbacks.items()):
        lark._callbacks[rule] = lambda children, rule=rule, fn=fn: (seen.add(rule), fn(children))[1]
    return lark, seen


def _generated(n: int):
    """``n`` specs of each generator, and the shipped sources the mutations start from."""
    texts = [p.read_text(encoding="utf-8") for p in fuzz.SOURCES]
    for gen in fuzz_specs.GENERATORS.values():
        texts += [gen(random.Random(i)) for i in range(n)]
    return texts


def test_every_alternative_of_every_grammar_rule_and_every_terminal_is_generated():
    lark, seen = _counting_lark()
    tokens = set()
    texts = [p.read_text(encoding="utf-8") for p in fuzz.SOURCES]
    texts += [gen(random.Random(i)) for gen in (fuzz_specs.gen_layers, fuzz_specs.gen_dataflow,
                                                fuzz_specs.gen_expressions, fuzz_specs.gen_sharing,
                                                fuzz_specs.gen_extern)
              for i in range(150)]
    texts += [fuzz_specs.gen_grammar(random.Random(1000 + i)) for i in range(600)]
    for text in texts:
        try:
            tokens |= {t.type for t in lark.lex(text, dont_ignore=True)}
            lark.parse(text, start="start")
        except Exception:  # noqa: BLE001 - a text that does not parse reaches fewer rules, that is all
            pass
    missing = sorted(str(r) for r in set(lark.rules) - seen)
    assert not missing, f"no generator writes these grammar alternatives: {missing}"
    terminals = {t.name for t in lark.terminals}
    assert not terminals - tokens, f"no generator writes these tokens: {sorted(terminals - tokens)}"


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _nodes(value, into: set) -> None:
    """Every IR node class in ``value``, through every field (not through ir.walk, whose
    own coverage is what it would be testing)."""
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, ir.Node):
            into.add(type(v))
            todo.extend(getattr(v, f) for f in type(v).model_fields)
        elif isinstance(v, (tuple, list)):
            todo.extend(v)
        elif isinstance(v, dict):
            todo.extend(v.values())


@pytest.mark.slow
def test_every_ir_node_class_is_generated():
    # netdsl's own classes: a test may define a construct of its own (tests/ir/test_walk.py).
    universe = {c for c in _subclasses(ir.Node) if c is not ir.Layer and c.__module__.startswith("netdsl.")}
    seen: set = set()
    for path in fuzz.SOURCES:
        for network in re.findall(r"^network\s+(\w+)\s*\(", path.read_text(encoding="utf-8"), re.M):
            _nodes(netdsl.compile(str(path), network=network, grant=grant_for(path)), seen)
    # The generators of specs meant to compile (many_errors, long_names and control aim at
    # diagnostics, and a 20,000-line input takes seconds), until every class is seen.
    aimed = [g for name, g in fuzz_specs.GENERATORS.items() if name not in ("many_errors", "long_names",
                                                                           "control")]
    for i in range(100):
        if universe <= seen:
            break
        for gen in aimed:
            try:
                _nodes(netdsl.compile(gen(random.Random(i)), grant=fuzz_specs.GRANT), seen)
            except netdsl.NetdslError:
                pass
    missing = sorted(c.__name__ for c in universe - seen)
    assert not missing, f"no generated spec that compiles holds these IR nodes: {missing}"


def test_externs_are_generated_granted_refused_and_misused():
    """The extern generator reaches a built extern of each class it names, and each
    refusal: no grant (E0121), no class path (E0122), nothing to import (E0123), and
    arguments the class cannot take (E0124); nothing outside the grant is imported."""
    seen_classes, codes = set(), set()
    for i in range(400):
        try:
            net = netdsl.compile(fuzz_specs.gen_extern(random.Random(i)), grant=fuzz_specs.GRANT)
        except netdsl.NetdslError as e:
            codes.add(e.diagnostics[0].code)
            continue
        seen_classes |= {n.target for n in _all_nodes(net) if getattr(n, "kind", None) == "extern"}
    assert seen_classes == set(fuzz_specs._EXTERNS), sorted(set(fuzz_specs._EXTERNS) - seen_classes)
    assert {"E0121", "E0122", "E0123", "E0124"} <= codes, sorted(codes)
    assert "fuzzlab" not in sys.modules


def _all_nodes(value):
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, ir.Node):
            yield v
            todo.extend(getattr(v, f) for f in type(v).model_fields)
        elif isinstance(v, (tuple, list)):
            todo.extend(v)


def test_every_merge_and_merge_option_is_generated_into_a_model():
    """Every merge op of the IR, and every option a merge takes, in a generated spec
    that compiles (so the contract behind it, build to export, runs on it)."""
    from typing import get_args

    from netdsl.check.dataflow import OPTIONS

    universe = {(op, None) for op in (*get_args(ir.MergeOp), "chunk")}
    universe |= {(op, a.name) for op, args in OPTIONS.items() for a in args}
    seen: set = set()
    for i in range(8000):  # about 3,700 draws reach all, in some 6 s
        if universe <= seen:
            break
        try:
            net = netdsl.compile(fuzz_specs.gen_dataflow(random.Random(i)))
        except netdsl.NetdslError:
            continue
        for node in _merges(net):
            if isinstance(node, ir.Chunk):  # `chunk(x) -> a, b`, its own node: `dim` 0 unless given
                seen |= {("chunk", None)} | ({("chunk", "dim")} if node.dim else set())
                continue
            seen.add((node.op, None))
            seen |= {(node.op, name) for name in {a.name for args in OPTIONS.values() for a in args}
                     if getattr(node, name, None) is not None}
    missing = sorted(map(str, universe - seen))
    assert not missing, f"no generated spec that compiles holds these merges or options: {missing}"


def test_blocks_of_several_tensors_are_generated_into_models():
    """A block given several results and one giving several, named where it is used, in
    a generated spec that compiles; and each misuse of them, each with its code."""
    seen: set = set()
    codes: set = set()
    for i in range(3000):
        if {"in", "out"} <= seen and {"E0135", "E0136", "E0137"} <= codes:
            break
        text = fuzz_specs.gen_dataflow(random.Random(i))
        try:
            net = netdsl.compile(text)
        except netdsl.NetdslError as e:
            codes |= {d.code for d in e.diagnostics}
            continue
        for node in ir.walk(net.body):
            if isinstance(node, ir.Scope) and node.sources:
                seen.add("in")
            if isinstance(node, ir.Scope) and node.targets:
                seen.add("out")
    assert seen == {"in", "out"} and {"E0135", "E0136", "E0137"} <= codes, (seen, codes)


def test_chunk_is_generated_into_models_and_misused():
    """`chunk(x) -> a, b` in a generated spec that compiles, and each misuse with its code:
    too few names (E0137), parts that do not divide (E0332), a dimension out of range (E0219)."""
    seen, codes = 0, set()
    for i in range(3000):
        text = fuzz_specs.gen_dataflow(random.Random(i))
        if "chunk(" not in text:
            continue
        try:
            net = netdsl.compile(text)
        except netdsl.NetdslError as e:
            codes |= {d.code for d in e.diagnostics}
            continue
        seen += any(isinstance(n, ir.Chunk) for n in _all_nodes(net))
        if seen >= 5 and {"E0137", "E0332", "E0219"} <= codes:
            break
    assert seen >= 5 and {"E0137", "E0332", "E0219"} <= codes, (seen, codes)


def _merges(value):
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, (ir.Merge, ir.Chunk)):
            yield v
        if isinstance(v, ir.Node):
            todo.extend(getattr(v, f) for f in type(v).model_fields)
        elif isinstance(v, (tuple, list)):
            todo.extend(v)


def _calls(text: str):
    """(kind, {argument: value text}) of each layer call on its own line, as gen_extremes writes them."""
    for m in re.finditer(r"^\s*(?:apply )?(\w+)\((.*)\)\s*$", text, re.M):
        yield m.group(1), dict(re.findall(r"(\w+) = ((?:\[[^\]]*\]|[^,])+)", m.group(2)))


def test_every_layer_argument_is_generated_at_an_edge_of_its_type():
    edges: dict[tuple[str, str], set[str]] = {}
    for i in range(4000):
        for kind, args in _calls(fuzz_specs.gen_extremes(random.Random(i))):
            for name, value in args.items():
                edges.setdefault((kind, name), set()).add(value.strip())
    extreme = set(fuzz_specs.EXTREME_INTS + fuzz_specs.EXTREME_FLOATS)
    missing = []
    for kind, sig in LAYERS.items():
        for a in sig.args:
            values = edges.get((kind, a.name), set())
            t, _ = fuzz_specs.arg_type(kind, a.name)
            if t in ("int", "float", "pair") and not any(v in extreme or v.startswith("[") for v in values):
                missing.append(f"{kind}.{a.name}")
            elif not values:
                missing.append(f"{kind}.{a.name}")
            if t == "float" and not {"3.5e38", "1e39", "1e300"} & values:
                missing.append(f"{kind}.{a.name} past float32")
    assert not missing, f"never generated at an edge: {missing}"


def test_reuse_of_every_layer_kind_is_generated_at_another_shape():
    kinds, moved = set(), set()
    for i in range(3000):
        text = fuzz_specs.gen_reuse(random.Random(i))
        kind = re.search(r"^\s*a: (\w+)", text, re.M).group(1)
        kinds.add(kind)
        after = text.split("\n    a: ", 1)[1].split("\n", 1)[1]
        if any(after.lstrip().startswith(r) for r in fuzz_specs._RESHAPERS if r != "relu"):
            moved.add(kind)
    assert kinds == set(LAYERS), sorted(set(LAYERS) - kinds)
    assert moved == set(LAYERS), f"reused only at their own shape: {sorted(set(LAYERS) - moved)}"


def test_every_command_has_a_driver_that_runs_it(tmp_path):
    assert set(fuzz_commands.DRIVERS) == set(COMMANDS) == set(fuzz_commands.WEIGHTS)
    p = fuzz_commands.make_project(tmp_path, b"", fuzz.SOURCES[:1])
    for name, driver in fuzz_commands.DRIVERS.items():
        assert driver(random.Random(0), p).argv[0] == name


def test_export_is_given_every_kind_of_weights_file(tmp_path):
    # --weights: one that fits (exported into the ONNX file, or checked for the .py), one of
    # other keys (refused with the key report), and files that are no checkpoint at all.
    p = fuzz_commands.make_project(tmp_path, b"network n() {\n    input [3, 8, 8]\n    c: conv2d(4, 3)\n}\n",
                                   fuzz.SOURCES[:1])
    seen = set()
    for i in range(300):
        argv = fuzz_commands.d_export(random.Random(i), p).argv
        if "--weights" in argv:
            seen.add((argv[argv.index("--weights") + 1], "--format" in argv))
    names = {name for name, _ in seen}
    assert {"fits.pt", "other.pt", "notes.txt", "missing.pt", "input.net"} <= names
    assert any(str(p.outside) in name for name in names)
    assert {("fits.pt", True), ("fits.pt", False)} <= seen  # into ONNX, and beside Python


def test_every_write_target_and_consent_is_tried(tmp_path):
    # Each command that writes is tempted with each kind of target, with and without --force.
    tried = {}
    for i in range(400):
        where = tmp_path / str(i)
        where.mkdir()
        p = fuzz_commands.make_project(where, b'import "resnet.net"\n', fuzz.SOURCES[:3] + [
            fuzz.ROOT / "specs" / "resnet.net"])
        for name in ("build", "graph", "export"):
            call = fuzz_commands.DRIVERS[name](random.Random(f"{i}:{name}"), p)
            flag = {"build": "--save", "graph": "-o", "export": "-o"}[name]
            if flag in call.argv:
                target = Path(call.argv[call.argv.index(flag) + 1])
                kind = ("spec" if target == p.spec else "import" if target.name == "resnet.net" else
                        "dir" if target.is_dir() else "link" if target.is_symlink() else
                        "missing dir" if not target.parent.exists() else
                        "new" if not target.exists() else
                        "netdsl's" if fuzz_commands.netdsl_wrote(target.read_bytes()) else target.stem)
                tried.setdefault(name, set()).add((kind, "--force" in call.argv))
    every = {"spec", "import", "dir", "link", "missing dir", "new", "notes", "netdsl's", "earlier"}
    for name in ("graph", "export"):
        assert {k for k, _ in tried[name]} == every, name
        assert {f for _, f in tried[name]} == {True, False}
    assert {k for k, _ in tried["build"]} == every | {"old"}


# ---------------------------------------------------------------- the judges can fail


@pytest.fixture
def project(tmp_path, monkeypatch):
    p = fuzz_commands.make_project(tmp_path, b"network n() {\n    input [3, 8, 8]\n    relu\n}\n", fuzz.SOURCES[:2])
    monkeypatch.chdir(p.root)
    return p


def test_a_write_without_consent_is_a_breach(project, monkeypatch):
    from netdsl.cli import files

    call = fuzz_commands.Call(["graph", "input.net", "-o", "notes.txt"])
    before = fuzz_commands.snapshot(project.root, project.outside)
    assert fuzz_commands.run_in_process(call)[0] == 2  # refused: the notes are the user's
    assert fuzz_commands.judge_files(call, before, fuzz_commands.snapshot(project.root, project.outside)) == ""
    # The same command under a policy that lets everything through: the judge catches it.
    monkeypatch.setattr(files, "check_target", lambda path, **kw: Path(path))
    assert fuzz_commands.run_in_process(call)[0] == 0
    breach = fuzz_commands.judge_files(call, before, fuzz_commands.snapshot(project.root, project.outside))
    assert "changed without consent" in breach and "notes.txt" in breach


def test_a_link_followed_out_of_the_tree_is_a_breach(project, monkeypatch):
    from netdsl.cli import files

    call = fuzz_commands.d_fmt(random.Random(0), project)
    call.argv = ["fmt", "sub"]
    call.may_write = {f for f in project.root.rglob("*.net") if not f.is_symlink()}
    before = fuzz_commands.snapshot(project.root, project.outside)
    fuzz_commands.run_in_process(call)
    assert fuzz_commands.judge_files(call, before, fuzz_commands.snapshot(project.root, project.outside)) == ""
    # A walk that follows links rewrites the victim outside: the judge says so.
    real = files.files_under
    monkeypatch.setattr(files, "files_under", lambda root, pattern="*.net": (sum(real(root, pattern), []), []))
    fuzz_commands.run_in_process(call)
    breach = fuzz_commands.judge_files(call, before, fuzz_commands.snapshot(project.root, project.outside))
    assert "victim.net" in breach


def test_the_stamp_is_read_as_the_policy_says(project):
    # The harness's own reading of "netdsl wrote it" agrees with what netdsl writes.
    out = project.root / "g.mmd"
    fuzz_commands.run_in_process(fuzz_commands.Call(["graph", "input.net", "-o", str(out)]))
    assert fuzz_commands.netdsl_wrote(out.read_bytes())
    assert not fuzz_commands.netdsl_wrote(out.read_bytes().replace(b"n", b"m", 1))
    assert fuzz_commands.netdsl_wrote(fuzz_commands.stamped("x = 1\n"))


class _LoggingClient:
    """A stand-in for the language server that logs an error on the first notification."""

    def __init__(self):
        self.logs: list[dict] = []

    def notify(self, method, params):
        self.logs.append({"type": 1, "message": "netdsl lsp: hover failed\nTraceback ..."})

    def diagnostics(self, uri, version, timeout):
        return []

    def request(self, method, params, timeout):
        return None


def test_an_error_in_the_servers_log_is_a_crash(project, monkeypatch):
    monkeypatch.setattr(fuzz_commands, "_server", lambda cwd: _LoggingClient())
    monkeypatch.setattr(fuzz_commands, "stop_server", lambda: None)
    result, detail = fuzz_commands.run_lsp(random.Random(0), project, 5.0)
    assert result == "crash" and "hover failed" in detail


def test_the_language_server_answers_a_fuzzed_session(project):
    pytest.importorskip("pygls")
    try:
        for i in range(3):
            result, detail = fuzz_commands.run_lsp(random.Random(i), project, 30.0)
            assert result == "ok", detail
    finally:
        fuzz_commands.stop_server()


def test_the_exit_judge_takes_a_key_report_for_one_and_silence_for_a_crash():
    call = fuzz_commands.Call(["export", "-", "--format", "onnx", "-o", "m.onnx", "--weights", "other.pt"])
    report = b"error: --weights other.pt does not fit `n`: 1 unexpected\n"
    assert fuzz_commands.judge("export", call, 1, b"", report)[0] == "report"
    assert fuzz_commands.judge("export", call, 1, b"", b"")[0] == "crash"
    plain = fuzz_commands.Call(["export", "-", "--format", "onnx", "-o", "m.onnx"])
    assert fuzz_commands.judge("export", plain, 1, b"", report)[0] == "crash"  # no --weights given


def test_the_gradient_judge_excuses_float32_overflow_only():
    import torch

    # Forty linear layers that each multiply by 12: the outputs reach 1e43, beyond float32
    # but not float64, whose gradients are beyond float32 too: the network's own scale.
    # An eps that float32 holds as 0 (on a constant channel, variance 0) is NaN in float32
    # only, and float64's gradients stay in range: a value gone wrong, still reported.
    deep = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(40)])
    with torch.no_grad():
        for layer in deep:
            layer.weight.fill_(3.0)
    x = torch.ones(2, 4)
    out = deep(x).sum()
    out.backward()
    assert not all(torch.isfinite(p.grad).all() for p in deep.parameters())
    assert fuzz._overflows_float32(deep, [x])
    class TinyDivisor(torch.nn.Module):  # 1e-46 is 0 in float32, not in float64
        def forward(self, x):
            return x * 1e-30 / (x * 0 + 1e-46)

    tiny = torch.nn.Sequential(torch.nn.Linear(4, 4), TinyDivisor())
    tiny(x).sum().backward()
    assert not all(torch.isfinite(p.grad).all() for p in tiny.parameters())
    assert not fuzz._overflows_float32(tiny, [x])
