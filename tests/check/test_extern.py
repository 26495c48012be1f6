"""Extern modules (netdsl/check/extern.py, netdsl/grant.py): a spec may use a Python
nn.Module class, imported only where the one running netdsl grants its module.

The planted modules below write a file when imported, so that a test sees whether
netdsl imported them; they live in a fresh directory put first on sys.path."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import netdsl
from netdsl.analysis.counts import analyse
from netdsl.backend.codegen import generate
from netdsl.backend.lower import lower
from netdsl.grant import Grant

ROOT = Path(__file__).resolve().parents[2]

PLANT = '''
import pathlib, torch
from torch import nn
pathlib.Path(__file__).with_name("imported.txt").write_text("yes")

class Gain(nn.Module):
    """A per-channel gain of {channels} channels, times a constant."""
    def __init__(self, channels, times=2.0):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(channels, 1, 1) + 0.5)
        self.times = times
    def forward(self, x):
        return x * self.weight * self.times

class Pair(nn.Module):
    def forward(self, x):
        return x, x

class Open(Gain):
    """Gain, with keyword arguments it takes whatever their names."""
    def __init__(self, channels, **options):
        super().__init__(channels, options.get("times", 2.0))

def not_a_class():
    pass
'''

SPEC = '''
extern gain = "plantlab.layers.Gain"

network n() {
    input [3, 8, 8]
    conv: conv2d(4, 3, padding = 1)
    g: gain(4, times = 0.5)
    relu
    flatten
    fc: linear(5)
}
'''


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A package `plantlab` on sys.path whose import leaves `imported.txt` behind."""
    pkg = tmp_path / "plantlab"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "layers.py").write_text(PLANT)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("plantlab", "plantlab.layers"):
        sys.modules.pop(name, None)
    yield pkg
    for name in ("plantlab", "plantlab.layers"):
        sys.modules.pop(name, None)


def codes(e: netdsl.NetdslError) -> list[tuple[str, int, int]]:
    return [(d.code, d.span.line, d.span.column) for d in e.diagnostics if d.span]


def test_without_a_grant_nothing_is_imported(lab):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(SPEC)
    assert codes(e.value) == [("E0121", 7, 8)]
    assert "--allow-module plantlab.layers" in e.value.diagnostics[0].help
    assert "plantlab.layers" not in sys.modules
    assert not (lab / "imported.txt").exists()


@pytest.mark.parametrize("prefix", ["plantlab.lay", "plantlab.layers_extra", "plantlab.layers.Gain2", "other"])
def test_a_grant_covers_whole_dotted_names_only(lab, prefix):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(SPEC, grant=[prefix])
    assert [c for c, _, _ in codes(e.value)] == ["E0121"]
    assert not (lab / "imported.txt").exists()


@pytest.mark.parametrize("prefix", ["plantlab", "plantlab.layers", "plantlab.layers.Gain"])
def test_a_granted_extern_is_checked_by_running_it(lab, prefix):
    net = netdsl.compile(SPEC, grant=prefix)
    assert (lab / "imported.txt").exists()
    g = net.body[1]
    assert (g.kind, g.target, dict(g.kwargs), g.in_shape, g.out_shape, g.params) == \
        ("extern", "plantlab.layers.Gain", {"channels": 4, "times": 0.5}, (4, 8, 8), (4, 8, 8), 4)


def test_the_grant_is_checked_for_its_type_and_form():
    with pytest.raises(ValueError, match="not a Python module name"):
        Grant.of(["timm/layers"])
    with pytest.raises(TypeError, match="must be a str"):
        Grant.of([3])
    with pytest.raises(TypeError):
        netdsl.compile(SPEC, grant=7)


def test_the_built_model_is_the_class_with_the_specs_arguments(lab):
    model = netdsl.build(SPEC, grant=["plantlab"])
    from plantlab.layers import Gain  # the same class the model holds

    assert type(model.g) is Gain and model.g.times == 0.5
    assert sorted(model.state_dict()) == ["conv.bias", "conv.weight", "fc.bias", "fc.weight", "g.weight"]

    ref = nn.Sequential()
    ref.add_module("conv", nn.Conv2d(3, 4, 3, padding=1))
    ref.add_module("g", Gain(4, times=0.5))
    ref.add_module("relu", nn.ReLU())
    ref.add_module("flatten", nn.Flatten())
    ref.add_module("fc", nn.Linear(256, 5))
    netdsl.testing.assert_equivalent(SPEC, ref, grant=["plantlab"])


def test_counts_are_the_built_modules_and_fvcores(lab):
    from fvcore.nn import FlopCountAnalysis

    spec = 'extern blur = "timm.layers.BlurPool2d"\n' + SPEC.replace(
        "    relu\n", "    relu\n    aa: blur(channels = 4, filt_size = 3, stride = 2)\n").replace(
        "    fc: linear(5)", "    init fc.bias = zeros()\n    fc: linear(5)")
    net = netdsl.compile(spec, grant=["plantlab", "timm.layers"])
    a = analyse(net)
    model = lower(net, device="cpu", grant=["plantlab", "timm.layers"]).eval()
    assert a.params == sum(p.numel() for p in model.parameters())
    fca = FlopCountAnalysis(model, torch.zeros(1, 3, 8, 8))
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert a.macs == fca.total() > 0
    row = next(r for r in a.rows if r.name == "aa")
    assert (row.type, row.output_shape, row.counted) == ("BlurPool2d", (4, 4, 4), True)


def test_an_in_place_layer_after_an_extern_is_refused(lab):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(SPEC.replace("    relu\n", "    relu(inplace = true)\n"), grant=["plantlab"])
    assert [c for c, _, _ in codes(e.value)] == ["E0311"]
    assert "`gain`" in e.value.diagnostics[0].label


def test_a_reused_extern_shares_its_module(lab):
    spec = SPEC.replace("    relu\n", "    reuse g\n    relu\n")
    model = netdsl.build(spec, grant=["plantlab"])
    assert sum(1 for k in model.state_dict() if k.startswith("g.")) == 1
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        by_hand = model.fc(torch.relu(model.g(model.g(model.conv(x)))).flatten(1))
        torch.testing.assert_close(model(x), by_hand, rtol=0, atol=0)


@pytest.mark.parametrize("bad, code", [
    ("gain(4, bad = 1)", "E0202"),
    ("gain()", "E0203"),
    ("gain(4, 5, 6)", "E0201"),
    ("gain(7)", "E0124"),
])
def test_arguments_are_matched_to_the_constructor(lab, bad, code):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(SPEC.replace("gain(4, times = 0.5)", bad), grant=["plantlab"])
    assert [c for c, _, _ in codes(e.value)] == [code]


def test_an_open_keyword_must_be_one_python_can_pass_by_name(lab, tmp_path):
    spec = SPEC.replace("plantlab.layers.Gain", "plantlab.layers.Open")
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec.replace("times = 0.5", "class = 0.5"), grant=["plantlab"])
    assert codes(e.value) == [("E0202", 7, 16)]
    assert "Python keyword" in e.value.diagnostics[0].label
    # any other name reaches **options, and the exported file compiles and agrees
    model = netdsl.build(spec, grant=["plantlab"]).eval()
    source = generate(spec.replace("times = 0.5", "times = 0.5, note = 1"), grant=["plantlab"])
    assert "plantlab.layers.Open(channels=4, times=0.5, note=1)" in source
    _agrees(source, model)


def _agrees(source: str, model: nn.Module) -> None:
    """The exported ``source``'s network loads ``model``'s weights and computes the same."""
    namespace: dict = {}
    exec(compile(source, "generated.py", "exec"), namespace)
    again = namespace["N"]()
    again.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("target, said", [
    ("plantlab.layers.Pair", "returned a tuple"),
    ("plantlab.layers.not_a_class", "not an nn.Module class"),
    ("plantlab.nothing.Gain", "cannot import `plantlab.nothing`"),
])
def test_what_cannot_serve_as_a_layer_is_said(lab, target, said):
    spec = SPEC.replace("plantlab.layers.Gain", target).replace("gain(4, times = 0.5)", "gain()")
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec, grant=["plantlab"])
    assert said in e.value.diagnostics[0].label


def test_the_ir_round_trips_but_building_it_needs_the_grant_again(lab):
    net = netdsl.compile(SPEC, grant=["plantlab"])
    again = netdsl.ir.Network.model_validate_json(net.model_dump_json())
    assert again == net
    with pytest.raises(netdsl.NetdslError) as e:
        lower(again, device="meta")
    assert e.value.diagnostics[0].code == "E0121"
    assert lower(again, device="meta", grant=["plantlab.layers"]).g.weight.is_meta


def test_export_imports_the_same_class_and_computes_the_same(lab, tmp_path):
    model = netdsl.build(SPEC, grant=["plantlab"]).eval()
    source = generate(SPEC, grant=["plantlab"])
    assert "import plantlab.layers\n" in source
    assert "self.g = plantlab.layers.Gain(channels=4, times=0.5)" in source
    _agrees(source, model)


def test_pytorch_habits_hold(lab):
    model = netdsl.build(SPEC, grant=["plantlab"]).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(pickle.loads(pickle.dumps(model))(x), want, rtol=0, atol=0)
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), want, rtol=0, atol=0)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), want, rtol=0, atol=0)


def _cli(args, cwd, pythonpath, cache):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), str(ROOT)]),
           "NETDSL_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "netdsl", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_cli_refuses_without_the_flag_and_never_answers_a_granted_check_from_its_cache(lab, tmp_path):
    (tmp_path / "n.net").write_text(SPEC)
    cache = tmp_path / "cache"
    r = _cli(["check", "n.net"], tmp_path, tmp_path, cache)
    assert r.returncode == 1 and "error[E0121]" in r.stderr and "--allow-module plantlab.layers" in r.stderr
    assert not (lab / "imported.txt").exists()
    r = _cli(["check", "n.net", "--allow-module", "plantlab", "--format", "json"], tmp_path, tmp_path, cache)
    assert r.returncode == 0, r.stderr
    assert next(row for row in json.loads(r.stdout)["layers"] if row["name"] == "g")["params"] == 4
    # The class changes, no spec file does: the next check runs the new code.
    (lab / "layers.py").write_text(PLANT.replace("torch.rand(channels, 1, 1)", "torch.rand(channels, 8, 1)"))
    r = _cli(["check", "n.net", "--allow-module", "plantlab", "--format", "json"], tmp_path, tmp_path, cache)
    assert r.returncode == 0, r.stderr
    assert next(row for row in json.loads(r.stdout)["layers"] if row["name"] == "g")["params"] == 32
    r = _cli(["check", "n.net", "--allow-module", "plant/lab"], tmp_path, tmp_path, cache)
    assert r.returncode == 2 and "--allow-module" in r.stderr


@pytest.mark.slow
def test_a_spec_cannot_grant_itself(lab, tmp_path):
    # Nothing read from disk grants: not a setting beside the spec, not the spec's own text.
    (tmp_path / "pyproject.toml").write_text('[tool.netdsl]\nallow-module = ["plantlab"]\n')
    (tmp_path / "n.net").write_text("# --allow-module plantlab\n" + SPEC)
    r = _cli(["check", "n.net"], tmp_path, tmp_path, tmp_path / "cache")
    assert r.returncode == 1 and "error[E0121]" in r.stderr
    assert not (lab / "imported.txt").exists()


def test_a_sweep_takes_the_grant_to_its_workers(lab):
    from netdsl.tools.sweep import grid, run

    spec = SPEC.replace("network n() {", "network n(c = 4) {").replace("conv2d(4, 3", "conv2d(c, 3") \
        .replace("gain(4,", "gain(c,")
    rows = run(spec, [grid("c=2,4")], grant=["plantlab"], jobs=2)
    assert [(r.values["c"], r.code) for r in rows] == [(2, None), (4, None)]
    assert rows[0].params == 3 * 2 * 9 + 2 + 2 + 2 * 64 * 5 + 5
    assert [r.code for r in run(spec, [grid("c=2")])] == ["E0121"]


def test_diff_names_the_extern_argument_that_changed(lab):
    from netdsl.analysis.diff import diff

    a = netdsl.compile(SPEC, grant=["plantlab"])
    b = netdsl.compile(SPEC.replace("times = 0.5", "times = 3"), grant=["plantlab"])
    changed = [(c.name, c.fields) for c in diff(a, b).modules if c.fields]
    assert changed == [("g", {"times": (0.5, 3)})]


def test_a_granted_check_is_never_replayed_for_an_ungranted_one(lab):
    # The checker's memo replays a block instance it checked before: never across grants.
    spec = SPEC.replace("    g: gain(4, times = 0.5)\n", "    g: unit()\n") + \
        "\nblock unit() {\n    gain(in_channels)\n}\n"
    assert netdsl.compile(spec, grant=["plantlab"]).body[1].body[0].kind == "extern"
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec)
    assert [d.code for d in e.value.diagnostics] == ["E0121"]
    assert netdsl.compile(spec, grant=["plantlab"]).body[1].body[0].kind == "extern"


def test_a_granted_check_is_never_cached_though_the_memo_replays_it(lab, tmp_path, monkeypatch):
    # Two granted checks of one spec in one process: the second replays its block instance
    # from the memo, and must still tell check's result cache to keep nothing.
    from netdsl import cachedir, cli
    from netdsl.cli import checkcache

    spec = SPEC.replace("    g: gain(4, times = 0.5)\n", "    g: unit()\n") + \
        "\nblock unit() {\n    gain(in_channels)\n}\n"
    (tmp_path / "n.net").write_text(spec)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NETDSL_CACHE_DIR", str(tmp_path / "cache"))
    cachedir.open_cache(fresh=True)
    try:
        argv = ["check", "n.net", "--allow-module", "plantlab"]
        assert cli.main(list(argv), cache=True) == 0
        assert cli.main(list(argv), cache=True) == 0
        assert checkcache.replay(list(argv)) is None
    finally:
        monkeypatch.delenv("NETDSL_CACHE_DIR")
        cachedir.open_cache(fresh=True)
