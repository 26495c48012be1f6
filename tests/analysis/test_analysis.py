"""Static analysis: params and MACs from the checked IR, with no tensor, equal
to what the built model has and what fvcore counts on it — for every shipped
spec, found by globbing specs/ when the tests run, so that a spec added later is
covered without touching this file."""

import logging
import warnings
from pathlib import Path

import pytest
import torch
from shipped import grant_for
from slow_cases import slow_except
from torch.overrides import TorchFunctionMode
from torch_ops import OpRecorder

import netdsl
import netdsl.backend.extern
from netdsl import ir
from netdsl.analysis import _modules, analyse
from netdsl.backend.lower import lower
from netdsl.check import memo
from netdsl.cli import main
from netdsl.limits import Limits
from netdsl.syntax.loader import load

SPECS = Path(__file__).resolve().parents[2] / "specs"


def _cases():
    """(spec path, network) for each network a spec file defines at its top level.

    A file with one network compiles without ``--network``; a family file with
    several is covered network by network. A file that does not even load
    becomes one case, so that the test reports it instead of collection failing.
    """
    cases = []
    for path in sorted(SPECS.glob("*.net")):
        try:
            names = load(path.read_text(), str(path), path.parent, Limits()).root_networks
        except netdsl.NetdslError:
            names = []
        if len(names) <= 1:
            cases.append(pytest.param(str(path), None, id=path.stem))
        else:
            cases += [pytest.param(str(path), n, id=f"{path.stem}:{n}") for n in names]
    return cases


CASES = _cases()


def test_the_glob_finds_the_shipped_specs():
    found = {c.id for c in CASES}
    assert {"lenet5", "alexnet", "vgg16", "resnet34", "resnet50"} <= found


class _Measured:
    """One build and one fvcore trace per case, shared by the tests below; what they
    need is kept, the model is not (VGG-16 alone holds half a gigabyte)."""

    cache: dict = {}

    @classmethod
    def get(cls, path, network):
        key = (path, network)
        if key not in cls.cache:
            net = netdsl.compile(path, network=network, grant=grant_for(path))
            model = netdsl.build(path, network=network, grant=grant_for(path)).eval()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fvcore's tracer uses deprecated torch.jit APIs
                from fvcore.nn import FlopCountAnalysis
                logging.getLogger("fvcore").setLevel(logging.ERROR)
                with torch.no_grad():
                    fca = FlopCountAnalysis(model, torch.zeros(1, *net.input_shape))
                    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
                    total, by_module = fca.total(), fca.by_module()
            params = {name: sum(p.numel() for p in m.parameters())
                      for name, m in model.named_modules()}
            cls.cache[key] = (net, params, total, by_module)
        return cls.cache[key]


@pytest.mark.parametrize("path, network", slow_except(CASES))
def test_static_totals_equal_the_built_model_and_fvcore(path, network):
    net, params, total, _ = _Measured.get(path, network)
    a = analyse(net)
    assert a.params == params[""]
    assert a.macs == total
    assert a.flops == 2 * total


def _side_names(nodes, prefix=""):
    """Names of the modules inside side heads: they run in training only, so
    fvcore, tracing in eval mode, sees none of their work."""
    out = []
    for node in nodes:
        if isinstance(node, ir.Side):
            out += [prefix + m.name for m in _modules(node.body)]
        elif isinstance(node, ir.Scope):
            out += _side_names(node.body, prefix + node.name + ".")
        elif isinstance(node, ir.Residual):
            out += _side_names(node.body + (node.shortcut or ()), prefix)
        elif isinstance(node, ir.Gate):
            out += _side_names(node.body, prefix)
        elif isinstance(node, ir.Concat):
            for branch in node.branches:
                out += _side_names(branch, prefix)
        elif isinstance(node, ir.Dense):
            for layer in node.layers:
                out += _side_names(layer, prefix)
    return out


@pytest.mark.parametrize("path, network", slow_except(CASES))
def test_per_module_rows_equal_fvcore_by_module_and_the_module_tree(path, network):
    net, params, _, by_module = _Measured.get(path, network)
    rows = analyse(net).rows
    # The rows are the model's modules, in named_modules order: names are the contract.
    assert [r.name for r in rows] == [n for n in params if n]
    assert set(by_module) - {""} == {r.name for r in rows}
    sides = tuple(_side_names(net.body))
    compared = 0
    for r in rows:
        assert r.params == params[r.name], r.name
        if sides and (r.name in sides or r.name.startswith(tuple(s + "." for s in sides))):
            assert by_module[r.name] == 0, r.name  # not run in eval mode
            continue
        assert r.macs == by_module[r.name], r.name
        compared += 1
    assert compared > len(rows) // 2


def test_a_side_head_is_excluded_from_the_eval_total_but_keeps_its_rows():
    src = """network n() {
        input [3, 8, 8]
        stem: conv2d(4, 3)
        side aux {
            head: { adaptive_avgpool2d(1); flatten; linear(2) }
        }
        flatten
        fc: linear(3)
    }"""
    a = analyse(netdsl.compile(src))
    rows = {r.name: r for r in a.rows}
    assert rows["head"].macs == 4 * 6 * 6 + 4 * 2  # the pool reads 4×6×6, the linear 4 → 2
    assert rows["head"].params == 4 * 2 + 2
    assert a.macs == rows["stem"].macs + rows["fc"].macs
    assert a.params == rows["stem"].params + rows["head"].params + rows["fc"].params


class _NoTensors(TorchFunctionMode):
    """Records every torch function called while active."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls.append(getattr(func, "__name__", repr(func)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("path, network", slow_except(CASES))
def test_compile_and_analyse_touch_no_tensor(path, network, monkeypatch):
    # An extern is checked by running its class (docs/language.md, "Extern modules"):
    # the tensors it touches there are its own, and all netdsl touches.
    theirs: list[tuple[int, int, int, int]] = []  # [start, end) of calls and of ops, per run

    def marked(fn):
        def run(*args, **kwargs):
            start = len(functions.calls), len(ops.ops)
            try:
                return fn(*args, **kwargs)
            finally:
                theirs.append((start[0], len(functions.calls), start[1], len(ops.ops)))
        return run

    for name in ("module_class", "probe", "count_macs"):
        monkeypatch.setattr(netdsl.backend.extern, name, marked(getattr(netdsl.backend.extern, name)))
    memo.clear()  # checked afresh, not replayed from an earlier test's compile
    with _NoTensors() as functions, OpRecorder() as ops:
        a = analyse(netdsl.compile(path, network=network, grant=grant_for(path)))
    assert a.params > 0
    calls = [c for i, c in enumerate(functions.calls) if not any(s <= i < e for s, e, _, _ in theirs)]
    recorded = [o for i, o in enumerate(ops.ops) if not any(s <= i < e for _, _, s, e in theirs)]
    assert calls == [] and recorded == []
    assert bool(theirs) == bool(grant_for(path))  # the classes of a spec's externs ran, and only there


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_netdsl_check_touches_no_tensor(spec_path, capsys, fmt):
    with _NoTensors() as functions, OpRecorder() as ops:
        assert main(["check", spec_path("resnet50"), "--format", fmt]) == 0
    assert functions.calls == [] and ops.ops == []
    expected = "params:       25,557,032" if fmt == "table" else '"params": 25557032'
    assert expected in capsys.readouterr().out


# ---------------------------------------------------------------- activation memory


def _runtime_activations(model, input_shape):
    """What torchinfo counts, measured with hooks on the built model: twice the output
    bytes of every leaf module with parameters (eval mode, batch 1); and the largest
    tensor any module returns in training mode (side heads run), or the input."""
    total, largest = 0, 4 * torch.Size(input_shape).numel()

    def leaf(m, inputs, out):
        nonlocal total
        if next(m.parameters(recurse=False), None) is not None:
            total += 2 * out.numel() * out.element_size()

    def any_module(m, inputs, out):
        nonlocal largest
        for t in (out if isinstance(out, tuple) else (out,)):
            largest = max(largest, t[0].numel() * t.element_size())  # one sample of the batch

    handles = [m.register_forward_hook(leaf) for m in model.modules() if not any(m.children())]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for h in handles:
        h.remove()
    handles = [m.register_forward_hook(any_module) for m in model.modules()]
    model.train()
    with torch.no_grad():
        model(torch.zeros(2, *input_shape))
    for h in handles:
        h.remove()
    return total, largest


@pytest.mark.parametrize("spec, input", slow_except([
    ("lenet5", None), ("alexnet", (3, 96, 96)), ("vgg16", (3, 64, 64)), ("resnet50", (3, 96, 96)),
    ("densenet121", (3, 32, 32)), ("efficientnet_b0", (3, 96, 96)), ("inception_v3", None),
], fast=("lenet5", "alexnet", "resnet50", "densenet121", "efficientnet_b0")))
def test_activation_figures_equal_what_the_built_model_makes(spec_path, spec, input):
    net = netdsl.compile(spec_path(spec), input=input)
    a = analyse(net)
    total, largest = _runtime_activations(lower(net), net.input_shape)
    assert a.activation_bytes == total
    assert a.largest_activation_bytes == largest


def test_torchinfo_counts_only_leaves_with_parameters_twice_and_side_heads_not():
    net = netdsl.compile("network n() {\n input [3, 8, 8]\n c: conv2d(4, 3)\n relu\n"
                         " side aux { flatten\n linear(5) }\n bn: batchnorm2d(affine = false)\n"
                         " flatten\n fc: linear(2)\n}")
    a = analyse(net)
    assert a.activation_bytes == 2 * 4 * (4 * 6 * 6 + 2)  # c and fc; not relu, bn, aux
    assert (a.largest_activation_bytes, a.largest_activation) == (4 * 3 * 8 * 8, "input")


def test_labels_with_control_characters_are_escaped_in_every_table():
    # A label may hold any character but `.`; printed raw, "\x1b]0;...\x07" retitles the
    # terminal and "\n" breaks the table. Diagnostics escape them; so do the tables.
    from netdsl.analysis.diff import diff
    from netdsl.analysis.diff import render_table as diff_table
    from netdsl.analysis.table import render_table

    spec = 'network n() { input [3, 8, 8]\n "' + "\x1b]0;pwned\x07" + '": relu\n "a\\nb": relu }'
    a, b = netdsl.compile(spec), netdsl.compile(spec.replace("relu }", "sigmoid }"))
    for text in (render_table(analyse(a), 2), diff_table(diff(a, b), 2, "", "")):
        assert not [c for c in text if not c.isprintable() and c != "\n"], text
        assert "\\x1b]0;pwned\\x07" in text or "a\\nb" in text
    assert "\\x1b]0;pwned\\x07" in render_table(analyse(a), 2)
