"""specs/densenet.net is torchvision's DenseNet family and specs/densenet121.net
its DenseNet-121: the state_dict names torchvision's, the parameter and MAC counts
are docs/specs.md's figures, every member has torchvision's parameters, dropout
inside the dense layers draws, gradients reach every dense layer, and the
initialisation statistics are torchvision's. (DenseNet-121 and a small member with
dropout against torchvision's, outputs and gradients, are rows of test_zoo.py.)"""

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


def test_state_dict_names_torchvisions_keys():
    keys = list(netdsl.build(D121, device="meta").state_dict())
    assert len(keys) == KEYS
    for key in ("features.denseblock1.denselayer1.norm1.weight", "features.transition1.conv.weight",
                "features.norm5.running_var", "classifier.weight"):
        assert key in keys


def test_static_macs_equal_fvcore_total():
    a = analyse(netdsl.compile(D121))
    assert a.macs == MACS
    assert a.params == PARAMS


@pytest.mark.slow
def test_gradients_reach_every_dense_layer():
    # Dense connectivity end to end, batch statistics included, at 64x64 to stay fast.
    torch.manual_seed(2)
    ours = netdsl.build(D121, input=[3, 64, 64]).train()
    (ours(torch.randn(2, 3, 64, 64)) * torch.randn(2, 1000)).sum().backward()
    convs = {k: p.grad for k, p in ours.named_parameters() if k.endswith("conv1.weight")}
    assert len(convs) == 58 and all(g.abs().sum() > 0 for g in convs.values())


def test_dropout_inside_dense_layers_draws():
    ours = netdsl.build(FAMILY, input=[3, 32, 32], growth_rate=12, block_config=[2, 3],
                        num_init_features=16, drop_rate=0.2, num_classes=10).train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(6)
    a = ours(x)
    torch.manual_seed(7)
    assert not torch.allclose(ours(x), a)  # dropout really ran


@pytest.mark.slow
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


@pytest.mark.slow
def test_weight_statistics_match_torchvision_init():
    torch.manual_seed(0)
    theirs = dict(tvm.densenet121().named_modules())
    torch.manual_seed(4)
    ours = netdsl.build(D121)
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
