"""`netdsl diff`: modules matched by path, totals that are the analyses' difference."""

import functools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shipped import grant_for

import netdsl
from netdsl.analysis import analyse
from netdsl.analysis.diff import diff, modules, render_table, to_json
from netdsl.backend.lower import lower
from netdsl.cli import main

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(p.name for p in (ROOT / "specs").glob("*.net"))


@functools.cache
def compiled(spec: str, overrides: tuple = ()):
    path = ROOT / "specs" / spec
    return netdsl.api.compile_spec(str(path), dict(overrides), grant=grant_for(path))


@functools.cache
def totals(spec: str, overrides: tuple = ()):
    a = analyse(compiled(spec, overrides))
    return a.params, a.macs


@pytest.mark.parametrize("spec", SPECS)
def test_a_spec_against_itself_gives_an_empty_diff(spec):
    d = diff(compiled(spec), compiled(spec))
    assert d.modules == [] and d.params == 0 and d.macs == 0
    assert "no module added, removed or changed" in render_table(d)


# Values each family's parameters may take: a few each, so that compiled specs are reused.
OVERRIDES = {
    "resnet.net": {"depth": ["18", "34", "50", "101"], "num_classes": ["10", "1000"],
                   "zero_init_residual": ["true", "false"]},
    "densenet.net": {"growth_rate": ["12", "32"], "block_config": ["[2, 3]", "[6, 12, 24, 16]"],
                     "drop_rate": ["0.0", "0.2"]},
    "vgg.net": {"depth": ["11", "16"], "batch_norm": ["true", "false"], "num_classes": ["10"]},
    "efficientnet.net": {"variant": ["0", "1", "3"], "num_classes": ["10", "1000"]},
    "inception_v3.net": {"num_classes": ["10", "1000"], "dropout": ["0.2"]},
    "alexnet.net": {"num_classes": ["10", "1000"]},
    "lenet5.net": {"num_classes": ["2", "10"]},
}


@st.composite
def side(draw):
    spec = draw(st.sampled_from(sorted(OVERRIDES) + SPECS))
    choices = OVERRIDES.get(spec, {})
    names = draw(st.lists(st.sampled_from(sorted(choices)), unique=True)) if choices else []
    return spec, tuple(sorted((n, draw(st.sampled_from(choices[n]))) for n in names))


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(side(), side())
def test_the_totals_are_the_difference_of_the_two_analyses(a, b):
    d = diff(compiled(*a), compiled(*b))
    (pa, ma), (pb, mb) = totals(*a), totals(*b)
    assert (d.params, d.macs) == (pb - pa, mb - ma)
    # Each module's figures are those of its row in its network's table.
    rows_a = {r.name: r for r in analyse(d.a).rows}
    rows_b = {r.name: r for r in analyse(d.b).rows}
    for c in d.modules:
        for m, rows in ((c.a, rows_a), (c.b, rows_b)):
            if m is not None:
                r = rows[c.name]
                assert (m.type, m.shape, m.params, m.macs) == (r.type, r.output_shape, r.params, r.macs)
        assert (c.a is None) == (c.name not in rows_a) and (c.b is None) == (c.name not in rows_b)
    # Nothing that differs is left out: every row of A or B missing from the diff is equal in both.
    listed = {c.name for c in d.modules}
    for name in (rows_a.keys() | rows_b.keys()) - listed:
        x, y = rows_a[name], rows_b[name]
        assert (x.type, x.output_shape, x.params, x.macs) == (y.type, y.output_shape, y.params, y.macs)


def _net(body: str):
    return netdsl.compile("network n() { input [3, 16, 16]\n" + body + "\n}")


def test_a_renamed_module_is_removed_and_added():
    d = diff(_net("c: conv2d(8, 3)\nflatten\nfc: linear(10)"), _net("c: conv2d(8, 3)\nflatten\nhead: linear(10)"))
    assert [(c.change, c.name) for c in d.modules] == [("removed", "fc"), ("added", "head")]
    assert [c.params for c in d.modules] == [-15690, 15690] and d.params == 0


def test_a_module_holding_a_change_is_changed_even_with_equal_figures():
    a = _net("body: { c: conv2d(8, 3)\n d: dropout(0.1) }")
    b = _net("body: { c: conv2d(8, 3)\n d: dropout(0.5) }")
    d = diff(a, b)
    assert [(c.change, c.name, c.fields) for c in d.modules] == [
        ("changed", "body", {}), ("changed", "body.d", {"p": (0.1, 0.5)})]
    assert all(c.params == c.macs == 0 for c in d.modules)
    # Folded to the top level, the table still shows where to look.
    assert "~  body" in render_table(d, depth=1)


def test_resnext_against_resnet_shows_the_grouped_convs_and_their_cost():
    torchvision = pytest.importorskip("torchvision")
    d = diff(compiled("resnet50.net"), compiled("resnet50.net", (("groups", "32"), ("width_per_group", "4"))))
    grouped = [c for c in d.modules if c.fields.get("groups") == (1, 32)]
    assert len(grouped) == 16 and all(c.name.endswith(".conv2") for c in grouped)

    import torch

    def count(model):
        return sum(p.numel() for p in model.parameters())

    with torch.device("meta"):  # counting needs no values

        assert d.params == count(torchvision.models.resnext50_32x4d()) - count(torchvision.models.resnet50())
    # A grouped 3x3 conv costs 1/groups of a dense one of the same width: 128 wide in layer1.
    conv2 = next(c for c in grouped if c.name == "layer1.0.conv2")
    assert conv2.b.params == 128 * (128 // 32) * 9 and conv2.b.macs == conv2.b.params * 56 * 56
    assert conv2.a.macs == 64 * 64 * 9 * 56 * 56


def test_modules_are_in_named_modules_order():
    torch = pytest.importorskip("torch")  # noqa: F841
    net = compiled("inception_v3.net")
    model = netdsl.api.build(str(ROOT / "specs" / "inception_v3.net"), device="meta")
    assert [m.name for m in modules(net)] == [n for n, _ in model.named_modules() if n]


# ---------------------------------------------------------------- the command

def test_diff_of_one_spec_under_two_settings(capsys):
    spec = str(ROOT / "specs" / "resnet.net")
    assert main(["diff", spec, "--set-a", "depth=34", "--set-b", "depth=50", "--set", "num_classes=10",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    a, b = compiled("resnet.net", (("depth", "34"), ("num_classes", "10"))), \
        compiled("resnet.net", (("depth", "50"), ("num_classes", "10")))
    expected = to_json(diff(a, b), spec=(spec, spec),
                       set=({"depth": "34", "num_classes": "10"}, {"depth": "50", "num_classes": "10"}))
    assert out == json.loads(json.dumps(expected))
    assert out["delta"]["params"] == totals("resnet.net", (("depth", "50"), ("num_classes", "10")))[0] - \
        totals("resnet.net", (("depth", "34"), ("num_classes", "10")))[0]


def test_diff_of_two_specs_prints_the_table(capsys):
    assert main(["diff", str(ROOT / "specs" / "resnet34.net"), str(ROOT / "specs" / "resnet50.net"),
                 "--depth", "1"]) == 0
    out = capsys.readouterr().out
    pa, ma = totals("resnet34.net")
    pb, mb = totals("resnet50.net")
    assert f"params:  {pa:,} → {pb:,} (Δ +{pb - pa:,}" in out
    assert f"MACs:    {ma:,} → {mb:,} (Δ +{mb - ma:,}" in out
    rows = [line for line in out.splitlines() if line.startswith("~  ")]
    assert [r.split()[1] for r in rows] == ["layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    assert "in_features 512 → 2048" in out


def test_a_value_set_on_both_sides_and_one_side_is_a_usage_error(capsys):
    spec = str(ROOT / "specs" / "lenet5.net")
    assert main(["diff", spec, "--set", "num_classes=3", "--set-b", "num_classes=4"]) == 2
    assert "--set num_classes applies to both sides" in capsys.readouterr().err


def test_an_error_in_either_side_is_a_diagnostic(capsys):
    spec = str(ROOT / "specs" / "lenet5.net")
    assert main(["diff", spec, "--set-b", "num_classes=0"]) == 1
    assert "error[" in capsys.readouterr().err


def test_percentages_and_signs():
    d = diff(_net("c: conv2d(8, 3)"), _net("c: conv2d(4, 3)"))
    text = render_table(d)
    assert f"(Δ −{224 - 112:,}, −50.00%)" in text
    assert d.macs == -(8 - 4) * 14 * 14 * (3 * 3 * 3)


# ---------------------------------------------------------------- against torch's own view

# Pairs of (spec, --set values): families at two sizes, and two networks apart.
PAIRS = [
    (("resnet34.net", ()), ("resnet50.net", ())),
    (("resnet.net", (("depth", "18"),)), ("resnet.net", (("depth", "34"),))),
    (("vgg.net", (("depth", "11"),)), ("vgg.net", (("batch_norm", "true"), ("depth", "16")))),
    (("efficientnet.net", (("variant", "0"),)), ("efficientnet.net", (("variant", "1"),))),
    (("densenet.net", (("block_config", "[2, 3]"),)), ("densenet.net", (("growth_rate", "12"),))),
    (("inception_v3.net", ()), ("googlenet.net", ())),
    (("lenet5.net", ()), ("alexnet.net", ())),
]


def _torch_view(side):
    """A side's model as torch sees it, built on the meta device: its parameter count
    and the names of its modules."""
    model = lower(compiled(*side), device="meta")
    return sum(p.numel() for p in model.parameters()), {n for n, _ in model.named_modules() if n}


@pytest.mark.parametrize("a, b", PAIRS, ids=[f"{a[0]}-{b[0]}" for a, b in PAIRS])
def test_the_diff_is_the_difference_of_the_built_models(a, b):
    # An independent reference for what diff computes from the IR: torch's own
    # parameter counts of the two built models, and their named_modules().
    (pa, names_a), (pb, names_b) = _torch_view(a), _torch_view(b)
    d = diff(compiled(*a), compiled(*b))
    assert d.params == pb - pa
    assert {c.name for c in d.modules if c.change == "added"} == names_b - names_a
    assert {c.name for c in d.modules if c.change == "removed"} == names_a - names_b
    assert {c.name for c in d.modules if c.change == "changed"} <= names_a & names_b


SMALL = [("c: conv2d(8, 3)\nflatten\nfc: linear(10)", "c: conv2d(16, 3, stride = 2)\nflatten\nhead: linear(10)"),
         ("c: conv2d(8, 3)\nrelu\nflatten", "c: conv2d(8, 3)\nbn: batchnorm2d\nrelu\npool: maxpool2d(2)\nflatten"),
         ("b: { c: conv2d(8, 3, groups = 1) }", "b: { c: conv2d(9, 3, groups = 3)\n d: conv2d(9, 1) }")]


@pytest.mark.parametrize("a, b", SMALL, ids=["wider-strided-renamed", "layers-added", "grouped"])
def test_the_mac_delta_is_the_difference_of_fvcores_counts(a, b):
    torch = pytest.importorskip("torch")
    from fvcore.nn import FlopCountAnalysis

    def fvcore_macs(net):
        model = lower(net, device="cpu").eval()
        count = FlopCountAnalysis(model, torch.randn(1, 3, 16, 16))
        return count.unsupported_ops_warnings(False).uncalled_modules_warnings(False).total()

    na, nb = _net(a), _net(b)
    d = diff(na, nb)
    assert d.macs == fvcore_macs(nb) - fvcore_macs(na) != 0
