"""specs/inception_v3.net is torchvision's Inception v3 with the auxiliary head:
the state_dict names torchvision's, the parameter and MAC counts are docs/specs.md's
figures, training mode returns the aux logits beside the logits, every weight the
aux head's included takes part, and the initialisation statistics are
torchvision's. (Against torchvision's, strict load, eval and training outputs and
gradients, is a row of test_zoo.py.)"""

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import inception_v3

import netdsl
from netdsl.analysis import analyse

# The reference figures of docs/specs.md, measured on torchvision 0.29.1 / fvcore 0.1.5.
PARAMS = 27_161_264
KEYS = 580
MACS = 5_731_282_144


@pytest.fixture(scope="module")
def path():
    return str(Path(__file__).resolve().parents[2] / "specs" / "inception_v3.net")


def test_state_dict_names_torchvisions_keys(path):
    keys = list(netdsl.build(path, device="meta").state_dict())
    assert len(keys) == KEYS
    assert "Mixed_5b.branch5x5_1.conv.weight" in keys and "AuxLogits.fc.weight" in keys


def test_static_macs_equal_fvcore_total(path):
    # The aux head runs in training only, so it is not part of the eval-mode total.
    a = analyse(netdsl.compile(path))
    assert a.macs == MACS
    assert a.params == PARAMS


@pytest.mark.slow
def test_training_returns_the_aux_logits_and_every_weight_takes_part(path):
    torch.manual_seed(2)
    ours = netdsl.build(path).train()
    x = torch.randn(2, 3, 299, 299)
    out = ours(x)
    assert type(out).__name__.endswith("Outputs") and out._fields == ("logits", "aux_logits")
    ((out.logits * torch.randn(2, 1000)).sum() + 0.3 * (out.aux_logits * torch.randn(2, 1000)).sum()).backward()
    grads = {k: p.grad for k, p in ours.named_parameters() if k.endswith("weight")}
    assert "AuxLogits.fc.weight" in grads
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())
    with torch.no_grad():
        assert isinstance(ours.eval()(x[:1]), torch.Tensor)


# ---------------------------------------------------------------- initialisation

def _std_tolerance(n: int) -> float:
    """Loose relative tolerance on a sample std of n draws (≈ 6 standard errors, at least 10%)."""
    return max(0.10, 6 / math.sqrt(2 * n))


def _expected_std(name: str) -> float:
    # Only the aux head's nn.Linear carries `stddev` (0.001); AuxLogits.conv1's 0.01 sits
    # on the BasicConv2d wrapper, which torchvision's init loop does not look at.
    return 0.001 if name == "AuxLogits.fc" else 0.1


@pytest.mark.slow
def test_weight_statistics_match_torchvision_init(path):
    torch.manual_seed(0)
    ref = inception_v3(aux_logits=True, init_weights=True)  # fresh torchvision weights
    torch.manual_seed(4)
    ours = netdsl.build(path)
    theirs = dict(ref.named_modules())
    checked = set()
    for name, m in ours.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        w, tw = m.weight, theirs[name].weight
        std, n = _expected_std(name), w.numel()
        tol = _std_tolerance(n)
        assert abs(w.std().item() / std - 1) < tol, name
        assert abs(w.std().item() / tw.std().item() - 1) < 2 * tol, name
        assert abs(w.mean().item()) < 6 * std / math.sqrt(n), name
        assert w.abs().max().item() <= 2.0  # truncated at ±2
        checked.add(name)
    assert checked == {k for k, m in theirs.items() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert ours.AuxLogits.fc.weight.std().item() < 0.002
    assert ours.AuxLogits.conv1.conv.weight.std().item() > 0.05
    # torchvision leaves linear biases at PyTorch's default, uniform in ±1/sqrt(fan_in).
    for fc in (ours.fc, ours.AuxLogits.fc):
        bound = 1 / math.sqrt(fc.in_features)
        assert fc.bias.abs().max().item() <= bound and fc.bias.std().item() > bound / 3
    for name, m in ours.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)), name
            assert torch.equal(m.bias, torch.zeros_like(m.bias)), name
            assert m.eps == 0.001, name
