"""specs/densenet.net is torchvision's DenseNet family and specs/densenet121.net
its DenseNet-121: same state_dict, same outputs and gradients for the same
weights, same parameter and MAC counts, and the same initialisation statistics."""

import math
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from torch import nn

import netdsl
from netdsl.analysis import analyse

SPECS = Path(__file__).resolve().parents[2] / "specs"
FAMILY = str(SPECS / "densenet.net")
D121 = str(SPECS / "densenet121.net")

# The reference figures of docs/specs.md, measured on torchvision 0.29.1 / fvcore 0.1.5.
PARAMS = 7_978_856
KEYS = 727
MACS = 2_865_546_752

# torchvision's densenet161/169/201 arguments (growth_rate, block_config, num_init_features).
VARIANTS = {
    "densenet161": (48, [6, 12, 36, 24], 96),
    "densenet169": (32, [6, 12, 32, 32], 64),
    "densenet201": (32, [6, 12, 48, 32], 64),
}


@pytest.fixture(scope="module")
def pair():
    """Our DenseNet-121 carrying torchvision's weights, and torchvision's model."""
    torch.manual_seed(0)
    ref = tvm.densenet121()
    ours = netdsl.build(D121)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def test_state_dict_keys_and_shapes_match_torchvision(pair):
    ours, ref = pair
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert got == want
    assert len(got) == KEYS
    for key in ("features.denseblock1.denselayer1.norm1.weight", "features.transition1.conv.weight",
                "features.norm5.running_var", "classifier.weight"):
        assert key in got


def test_parameter_count_matches_networks_md(pair):
    ours, ref = pair
    assert sum(p.numel() for p in ours.parameters()) == PARAMS
    assert sum(p.numel() for p in ref.parameters()) == PARAMS


def test_static_macs_equal_fvcore_total():
    a = analyse(netdsl.compile(D121))
    assert a.macs == MACS
    assert a.params == PARAMS


def test_eval_outputs_match(pair):
    ours, ref = pair
    ours.eval(), ref.eval()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        got, want = ours(x), ref(x)
    assert got.shape == (2, 1000)
    assert 0.1 < want.abs().max().item() < 1e3  # kaiming init keeps the scale
    assert (got - want).abs().max().item() <= 1e-5


def _grads(model, x, w):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)  # the same dropout masks for both
    out = model(x)
    (out * w).sum().backward()
    return out, {k: p.grad.clone() for k, p in model.named_parameters()}


def test_training_gradients_match_on_a_small_input(pair):
    # Dense connectivity end to end, batch statistics included, at 64x64 to stay fast.
    ours, ref = pair
    ours.train(), ref.train()
    torch.manual_seed(2)
    x, w = torch.randn(2, 3, 64, 64), torch.randn(2, 1000)
    got, got_grads = _grads(ours, x, w)
    want, want_grads = _grads(ref, x, w)
    assert (got - want).abs().max().item() <= 1e-5
    assert got_grads.keys() == want_grads.keys()
    worst = max((got_grads[k] - want_grads[k]).abs().max().item() for k in want_grads)
    assert worst <= 1e-5
    assert all(g.abs().sum() > 0 for k, g in got_grads.items() if k.endswith("conv1.weight"))


def test_dropout_inside_dense_layers_matches():
    # drop_rate > 0 adds dropout after each layer's 3x3 conv, where torchvision applies it.
    torch.manual_seed(5)
    ref = tvm.DenseNet(growth_rate=12, block_config=(2, 3), num_init_features=16, drop_rate=0.2,
                       num_classes=10)
    ours = netdsl.build(FAMILY, input=[3, 32, 32], growth_rate=12, block_config=[2, 3],
                        num_init_features=16, drop_rate=0.2, num_classes=10)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.train(), ref.train()
    x = torch.randn(2, 3, 32, 32)
    outs = []
    for model in (ours, ref):
        torch.manual_seed(6)
        outs.append(model(x))
    assert (outs[0] - outs[1]).abs().max().item() <= 1e-5
    torch.manual_seed(7)
    assert not torch.allclose(ours(x), outs[0])  # dropout really ran


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_family_members_have_torchvision_parameter_counts(name):
    growth, blocks, init = VARIANTS[name]
    ours = netdsl.build(FAMILY, device="meta", growth_rate=growth, block_config=blocks,
                        num_init_features=init)
    with torch.device("meta"):
        ref = getattr(tvm, name)()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}


def test_weight_statistics_match_torchvision_init(pair):
    torch.manual_seed(4)
    ours = netdsl.build(D121)
    theirs = dict(pair[1].named_modules())  # fresh torchvision weights: no test changes them
    checked = set()
    for name, m in ours.named_modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            std = math.sqrt(2 / fan_in)  # kaiming_normal, fan_in, gain sqrt(2)
        elif isinstance(m, nn.Linear):
            std = 1 / math.sqrt(3 * m.in_features)  # PyTorch's default: uniform ±1/sqrt(fan_in)
        else:
            continue
        w, n = m.weight, m.weight.numel()
        tol = max(0.10, 6 / math.sqrt(2 * n))
        assert abs(w.std().item() / std - 1) < tol, name
        assert abs(w.std().item() / theirs[name].weight.std().item() - 1) < 2 * tol, name
        assert abs(w.mean().item()) < 6 * std / math.sqrt(n), name
        checked.add(name)
    assert checked == {k for k, m in theirs.items() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert torch.equal(ours.classifier.bias, torch.zeros_like(ours.classifier.bias))
    for name, m in ours.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)), name
            assert torch.equal(m.bias, torch.zeros_like(m.bias)), name
