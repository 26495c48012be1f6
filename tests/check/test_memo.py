"""The caches of one process -- the memo of block instances (netdsl/check/memo.py), the
shared-subtree totals (analysis.summary) and the parsed texts (syntax.parser) -- change
nothing but time: with them on and off, the checked IR
(its JSON, spans included), the analysis and the diagnostics are the same, on every
shipped spec and size, a sweep grid, every error fixture and generated specs."""

import dataclasses
import json
import os
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shipped import grant_for
from slow_cases import slow_except

import netdsl
from netdsl import ir
from netdsl.analysis import analyse, totals
from netdsl.analysis import counts as analysis
from netdsl.api import compile_spec
from netdsl.check import memo
from netdsl.syntax import parser
from netdsl.tools.sweep import grid, run

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.net"))
sys.path.insert(0, str(ROOT / "bench"))
import errors_doc  # noqa: E402
import fuzz  # noqa: E402
from hostile_specs import hostile_flow_specs, hostile_specs  # noqa: E402

# The sizes each family spec defines, as the sweep benchmark plots them.
SIZES = {"efficientnet.net": [{"variant": v} for v in range(8)],
         "resnet.net": [{"depth": d} for d in (18, 34, 50, 101, 152)],
         "vgg.net": [{"depth": d} for d in (11, 13, 16, 19)],
         "densenet.net": [{"block_config": c} for c in ("[6, 12, 24, 16]", "[6, 12, 32, 32]",
                                                         "[6, 12, 48, 32]")],
         "tresnet.net": [{"variant": f'"{v}"'} for v in ("l", "v2_l")]}


@pytest.fixture
def memo_switch():
    """Yields set(on): memo, summary and parse caches on or off, tables emptied; restored after."""
    was = memo.ENABLED, analysis.CACHE, parser._PARSED_TEXT

    def set_(on: bool):
        memo.ENABLED = analysis.CACHE = on
        parser._PARSED_TEXT = was[2] if on else -1   # no text is short enough to keep
        memo.clear()
        analysis._SUMMARIES.clear()
        parser._PARSED.clear()

    yield set_
    memo.ENABLED, analysis.CACHE, parser._PARSED_TEXT = was
    memo.clear()


def outcome(fn):
    """Everything a compile gives that a user sees: the IR's JSON (spans and all), the
    analysis rows and totals, the sweep's totals; or the rendered diagnostics."""
    try:
        net = fn()
    except netdsl.NetdslError as e:
        return "error", e.render(), [dataclasses.astuple(d) for d in e.diagnostics]
    a = analyse(net)
    return ("ok", net.model_dump_json(), json.dumps([r.to_dict() for r in a.rows]),
            (a.params, a.macs, a.activation_bytes, a.largest_activation_bytes, a.largest_activation,
             a.output_shape), totals(net))


def same_with_and_without(memo_switch, fn, prime=None):
    """The outcome with the memo off; on, fresh (hits within the run) and again (hits
    across runs, after ``prime`` where given) must equal it."""
    memo_switch(False)
    off = outcome(fn)
    memo_switch(True)
    fresh = outcome(fn)
    if prime is not None:
        outcome(prime)
    again = outcome(fn)
    assert fresh == off
    assert again == off
    return off


def test_the_memo_shares_subtrees_and_the_switch_turns_it_off(memo_switch):
    # Guards the comparisons below: with it on, repeated instances share their nodes.
    def shared(net):
        seen, n = set(), 0
        todo = list(net.body)
        while todo:
            node = todo.pop()
            if isinstance(node, ir.Scope):
                n += any(id(c) in seen for c in node.body)
                seen.update(id(c) for c in node.body)
            todo.extend(c for b in ir.bodies(node) for c in b)
        return n

    spec = str(ROOT / "specs" / "resnet50.net")
    memo_switch(True)
    assert shared(netdsl.compile(spec)) > 5
    memo_switch(False)
    assert shared(netdsl.compile(spec)) == 0


def test_the_parse_cache_switch_turns_it_off(memo_switch):
    text = (ROOT / "specs" / "lenet5.net").read_text()
    memo_switch(True)
    assert parser.parse(text, "lenet5.net") is parser.parse(text, "lenet5.net")
    memo_switch(False)
    assert parser.parse(text, "lenet5.net") is not parser.parse(text, "lenet5.net")


@pytest.mark.parametrize("path", slow_except(SPECS), ids=[p.name for p in SPECS])
def test_every_shipped_spec_and_size_is_the_same(memo_switch, path):
    prog = netdsl.syntax.loader.load(path.read_text(), str(path), path.parent, netdsl.Limits())
    g = grant_for(path)
    for network in prog.root_networks:
        kind = "ok"
        for values in [{}] + SIZES.get(path.name, []):
            kind = same_with_and_without(
                memo_switch, lambda v=values, n=network: compile_spec(str(path), v, network=n, grant=g),
                prime=lambda n=network: compile_spec(str(path), network=n, grant=g))[0]
        assert kind == "ok", f"{path.name} {network}"


@pytest.mark.slow
def test_a_sweep_grid_is_the_same(memo_switch):
    spec = str(ROOT / "specs" / "efficientnet.net")
    grids = [grid("width=1.0,1.2"), grid("depth=1.0:1.4:0.2"), grid("resolution=224,0")]

    def rows():
        return [dataclasses.astuple(r) for r in run(spec, grids)]

    memo_switch(False)
    off = rows()
    memo_switch(True)
    assert rows() == off
    assert rows() == off
    assert any(r[5] is not None for r in off) and any(r[5] is None for r in off)  # errors and rows


FIXTURES = errors_doc.fixtures()


@pytest.mark.parametrize("fx", FIXTURES, ids=[fx.name for fx in FIXTURES])
def test_every_error_fixture_gives_the_same_diagnostics(memo_switch, fx):
    def fn():
        e = errors_doc.compile_fixture(fx)
        if e is not None:
            raise e
        return None

    memo_switch(False)
    off = errors_doc.compile_fixture(fx)
    memo_switch(True)
    for _ in range(2):  # fresh, then with the tables of the first
        on = errors_doc.compile_fixture(fx)
        assert (on is None) == (off is None)
        if off is not None:
            assert on.render() == off.render()
            assert [dataclasses.astuple(d) for d in on.diagnostics] == \
                [dataclasses.astuple(d) for d in off.diagnostics]


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.integers(0, 10**6))
def test_fuzzed_specs_are_the_same(memo_switch, index):
    # The fuzzer's inputs: shipped specs mutated, generated specs, tight limits, --set values.
    texts = [p.read_text(encoding="utf-8") for p in fuzz.SOURCES]
    item = fuzz.make_input(11, index, texts, ["a", "b"])
    try:
        limits = netdsl.Limits(**dict(item.limits))
    except (TypeError, ValueError):
        return
    if any(getattr(limits, k) > getattr(netdsl.Limits(), k) for k in ("max_nodes", "max_repeat")):
        return  # raised limits may take long, and change nothing here
    # Kept short: a spec of 200,000 steps checks for seconds, three times over.
    limits = limits.replace(max_nodes=min(limits.max_nodes, 20_000))
    cwd = os.getcwd()
    os.chdir(ROOT / "specs")  # the mutated specs import their neighbours
    try:
        same_with_and_without(
            memo_switch,
            lambda: compile_spec(item.data, dict(item.overrides), network=item.network, limits=limits,
                                 origin="cli"),
            prime=lambda: compile_spec(item.data, network=item.network, limits=limits))
    finally:
        os.chdir(cwd)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(hostile_specs(), hostile_flow_specs())
def test_generated_specs_are_the_same(memo_switch, case, flow):
    text = case[0]
    # The block used three times over, and the dataflow spec's names read from inside a
    # block instance: the memo replays the names a block binds (E0129 reads them).
    block = re.search(r"^block (\w+)", text, re.M).group(1)
    for spec in (text, text.replace(f" {block}(4)\n", f" {block}(4) * 3\n"),
                 flow, "block inner() {\n    relu -> x\n    from x\n}\n" + flow.replace(
                     "    output", "    inner\n    inner\n    inner\n    from x\n    output")):
        same_with_and_without(memo_switch, lambda s=spec: netdsl.compile(s))


INIT_RULES = """
block b(c) {
    conv: conv2d(c, 3, padding = 1)
    bn: batchnorm2d
}
network n() {
    input [3, 8, 8]
    b(4) * 2
    g: {
        init conv2d.weight = zeros
        b(4) * 2
    }
    h: {
        init bn.weight = normal(0, 2)
        b(4) * 2
    }
    k: {
        init conv.weight = kaiming_normal(mode = "fan_out")
        init missing.weight = zeros
        b(4)
    }
}
"""


GROUPS = """
block b(c) { conv2d(c, 1) }
network n(k = 3) {
    input [4, 8, 8]
    conv2d(4, 1) -> a
    for i in range(k) {
        "g{i}": {
            relu
            "inner{i}": { b(4) }
        }
    }
    LAST
    from a
    relu
}
"""


@pytest.mark.parametrize("spec", [INIT_RULES, INIT_RULES.replace("        init missing.weight = zeros\n", ""),
                                  GROUPS.replace("LAST", "-> b"), GROUPS.replace("LAST", ""),
                                  GROUPS.replace("LAST", "x: { }")],
                         ids=["unmatched", "matched", "groups-named", "groups-unread", "groups-empty"])
def test_init_rules_and_value_scopes_around_remembered_parts_are_the_same(memo_switch, spec):
    # One block, one argument, one input, under other `init` rules: kind rules, label
    # rules (which the instance marks as used, or E0110), a rule matching nothing. And a
    # labelled group repeated in a loop, in the network's value scope: the result its last
    # item leaves unread is what a later `from` reports (E0128), or a `-> name` names.
    same_with_and_without(memo_switch, lambda: netdsl.compile(spec))


NESTED = """
block b() { linear(4) }
block a() { b }
block w() { a }
network n(wrap = true) {
    input [4]
    linear(4)
    a
    if wrap { w }
}
"""


LISTS = """
let L = [1, 2, 3]
block inner(l) { for x in l { linear(4) } }
block outer() { inner(L) }
network n(again = true) {
    input [4]
    linear(4)
    outer
    if again { inner(L) }
}
"""


@pytest.mark.slow
@pytest.mark.parametrize("spec,limit,values,first,then", [
    ("resnet.net", "max_nodes", range(0, 900, 23), {"depth": 18}, {"depth": 34}),
    ("efficientnet.net", "max_nodes", range(1000, 2800, 150), {"variant": 0}, {"variant": 1}),
    ("efficientnet.net", "max_block_depth", range(0, 4), {"variant": 0}, {"variant": 1}),
    ("efficientnet.net", "max_nesting", range(0, 12), {"variant": 0}, {"variant": 1}),
    (NESTED, "max_block_depth", range(0, 5), {"wrap": False}, {}),
    # A list argument keys the step estimate by its identity, which another compile does not share.
    (LISTS, "max_nodes", range(0, 30), {"again": False}, {}),
])
def test_limits_stop_a_spec_where_they_did(memo_switch, spec, limit, values, first, then):
    # A limit reached inside an instance the memo holds from a compile of another size
    # under the same limits: the instance is expanded and stops where it always did, at
    # the same step, block depth or nesting, with the same message.
    path = spec if "\n" in spec else str(ROOT / "specs" / spec)
    kinds = set()
    for v in values:
        limits = netdsl.Limits().replace(**{limit: v})
        kinds.add(same_with_and_without(memo_switch, lambda lim=limits: compile_spec(path, then, limits=lim),
                                        prime=lambda lim=limits: compile_spec(path, first, limits=lim))[0])
    assert kinds == {"ok", "error"}


def test_a_built_model_owns_each_shared_subtree_anew(memo_switch):
    # Shared IR nodes are a description: each instance built from them gets its own
    # modules and weights, as many as the memo-free analysis counts.
    path, small = str(ROOT / "specs" / "efficientnet.net"), {"width": 0.25, "num_classes": 10}
    memo_switch(False)
    expected = analyse(netdsl.compile(path, **small))
    memo_switch(True)
    netdsl.compile(path, **small)
    model = netdsl.build(path, **small)
    params = list(model.parameters())
    assert len({p.data_ptr() for p in params}) == len(params)
    assert sum(p.numel() for p in params) == expected.params
    assert [name for name, _ in model.named_modules()][1:] == [r.name for r in expected.rows]


CRASHES = sorted((ROOT / "tests" / "fixtures" / "crashes").glob("*.net"))


@pytest.mark.slow
@pytest.mark.parametrize("path", CRASHES, ids=[p.stem for p in CRASHES])
def test_every_crash_fixture_is_the_same(memo_switch, path):
    # Inputs that once crashed or hung netdsl, deep recursions among them: the memo adds no
    # frame per level, so Python's stack runs out where it did (E0405 against E0402).
    same_with_and_without(memo_switch, lambda: netdsl.compile(path.read_bytes()))


@pytest.mark.slow
@pytest.mark.parametrize("name, prime", [("resnet50", {"depth": 34}), ("efficientnet_b0", {"variant": 1})])
def test_with_the_memo_a_shipped_network_is_still_torchvisions(memo_switch, name, prime):
    # Memo on against memo off compares netdsl with itself; this holds the memo's output
    # to a reference outside netdsl. The memo holds block instances from another size of
    # the family (`prime`); the network built with it has torchvision's state_dict keys
    # and shapes, in order, and with torchvision's weights, torchvision's outputs.
    import torch
    import torchvision

    memo_switch(True)
    family = "resnet.net" if name.startswith("resnet") else "efficientnet.net"
    netdsl.compile(str(ROOT / "specs" / family), **prime)
    assert memo.ENABLED
    model = netdsl.build(str(ROOT / "specs" / f"{name}.net"), input=[3, 64, 64])
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)()
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
        [(k, v.shape) for k, v in ref.state_dict().items()]
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), ref.eval()(x), atol=1e-5, rtol=1e-4)
