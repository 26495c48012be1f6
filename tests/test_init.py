"""Initialisation: a freshly built spec model starts from the distributions a
fresh torchvision model starts from (each parameter's mean and std agree
within sampling error), as the spec's `init` statements declare, and
`resnet(zero_init_residual = true)` starts the last norm of every residual body at zero."""

import math
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import netdsl

SPECS = Path(__file__).resolve().parent.parent / "specs"

# Every spec that has a torchvision counterpart, with the constructor NETWORKS.md names.
REFERENCES = {
    "alexnet": torchvision.models.alexnet,
    "vgg16": torchvision.models.vgg16,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "efficientnet_b0": torchvision.models.efficientnet_b0,
    "inception_v3": lambda: torchvision.models.inception_v3(aux_logits=True, init_weights=True),
    "densenet121": torchvision.models.densenet121,
}
SHIPPED = [name for name in REFERENCES if (SPECS / f"{name}.net").exists()]

# Standard errors a statistic may be off by. Seeds are fixed, so this only has to
# keep a correct spec passing; a wrong scheme is off by far more (see the self-test).
K = 6.0


def weight_mismatches(ours: nn.Module, ref: nn.Module) -> list[str]:
    """Names of the parameters of ``ours`` whose mean or std differs from ``ref``'s
    by more than two independent draws from one distribution would.

    A constant parameter of ``ref`` (ones, zeros) must be equal exactly. Otherwise,
    with n values of std s, two sample means differ by about s * sqrt(2 / n) and two
    sample stds by about s / sqrt(n) (normal data; less for uniform data).

    >>> _ = torch.manual_seed(0); a, b = nn.Linear(64, 64), nn.Linear(64, 64)
    >>> weight_mismatches(a, b)
    []
    """
    theirs = dict(ref.named_parameters())
    bad = []
    for name, p in ours.named_parameters():
        p, q = p.detach(), theirs[name].detach()
        if q.min() == q.max():
            if not torch.equal(p, q):
                bad.append(name)
            continue
        n, s = q.numel(), q.std().item()
        mean_off = abs(p.mean().item() - q.mean().item()) > K * s * math.sqrt(2 / n)
        std_off = abs(p.std().item() - s) > K * s / math.sqrt(n)
        if mean_off or std_off:
            bad.append(name)
    return bad


def test_the_four_core_specs_are_compared():
    # The list below is found on disk; it must not shrink by a file going missing.
    assert {"vgg16", "resnet34", "resnet50", "efficientnet_b0"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_fresh_weights_have_torchvision_statistics(name):
    torch.manual_seed(0)
    ours = netdsl.build(str(SPECS / f"{name}.net"))
    torch.manual_seed(1)
    ref = REFERENCES[name]()
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in ref.named_parameters()]
    assert weight_mismatches(ours, ref) == []
    del ours, ref


def test_the_comparison_catches_a_wrong_scheme():
    torch.manual_seed(0)
    a = torchvision.models.resnet18()
    torch.manual_seed(1)
    b = torchvision.models.resnet18()
    assert weight_mismatches(a, b) == []
    with torch.no_grad():
        # fan_in instead of fan_out: std off by sqrt(2) where channels double
        nn.init.kaiming_normal_(b.layer2[0].conv1.weight, mode="fan_in", nonlinearity="relu")
        b.layer3[0].bn1.weight.zero_()  # a constant that is not torchvision's
        b.fc.bias.add_(0.02)  # a shifted mean
    assert weight_mismatches(b, a) == ["layer2.0.conv1.weight", "layer3.0.bn1.weight", "fc.bias"]


def _weights(model, suffix):
    return [v for k, v in model.state_dict().items() if k.endswith(suffix)]


def test_zero_init_residual_zeroes_every_bn3():
    path = str(SPECS / "resnet.net")
    torch.manual_seed(0)
    on = netdsl.build(path, zero_init_residual=True, depth=50)
    off = netdsl.build(path, depth=50)
    for model, value in ((on, 0.0), (off, 1.0)):
        bn3 = _weights(model, ".bn3.weight")
        assert len(bn3) == 3 + 4 + 6 + 3
        assert all(torch.all(w == value) for w in bn3)
    # Like torchvision: only a bottleneck's last norm, and only its weight.
    assert all(torch.all(w == 1) for w in _weights(on, ".bn2.weight") + _weights(on, ".bn1.weight"))
    assert all(torch.all(b == 0) for b in _weights(on, ".bn3.bias"))


def test_zero_init_residual_zeroes_bn2_of_basic_blocks():
    on = netdsl.build(str(SPECS / "resnet.net"), zero_init_residual=True, depth=34)
    bn2 = _weights(on, ".bn2.weight")
    assert len(bn2) == 3 + 4 + 6 + 3
    assert all(torch.all(w == 0) for w in bn2)
    assert all(torch.all(w == 1) for w in _weights(on, ".bn1.weight"))
