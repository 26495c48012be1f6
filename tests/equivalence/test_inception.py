"""specs/inception_v3.net is torchvision's Inception v3 with the auxiliary head:
same state_dict, same outputs and gradients for the same weights, same
parameter and MAC counts, and the same initialisation statistics."""

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


def _calibrate_batchnorm(model):
    """Give batch norm running statistics from one batch.

    With fresh statistics (mean 0, var 1) and std-0.1 weights, eval-mode activations
    grow to ~1e12 and an absolute 1e-5 tolerance would be meaningless.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 299, 299))
    for m in bns:
        m.momentum = 0.1


@pytest.fixture(scope="module")
def pair(path):
    """Our model carrying torchvision's weights, and torchvision's model."""
    torch.manual_seed(0)
    ref = inception_v3(aux_logits=True, init_weights=True)
    _calibrate_batchnorm(ref)
    ours = netdsl.build(path)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def test_state_dict_keys_and_shapes_match_torchvision(pair):
    ours, ref = pair
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert got == want
    assert len(got) == KEYS
    assert "Mixed_5b.branch5x5_1.conv.weight" in got and "AuxLogits.fc.weight" in got


def test_parameter_count_matches_networks_md(pair):
    ours, ref = pair
    assert sum(p.numel() for p in ours.parameters()) == PARAMS
    assert sum(p.numel() for p in ref.parameters()) == PARAMS


def test_static_macs_equal_fvcore_total(path):
    # The aux head runs in training only, so it is not part of the eval-mode total.
    a = analyse(netdsl.compile(path))
    assert a.macs == MACS
    assert a.params == PARAMS


def test_eval_outputs_match(pair):
    ours, ref = pair
    ours.eval(), ref.eval()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 299, 299)
    with torch.no_grad():
        got, want = ours(x), ref(x)
    assert isinstance(got, torch.Tensor)
    assert got.shape == (2, 1000)
    assert 0.1 < want.abs().max().item() < 1e3  # calibrated: the tolerance means something
    assert (got - want).abs().max().item() <= 1e-5


def test_training_outputs_and_gradients_match(pair):
    ours, ref = pair
    ours.train(), ref.train()
    torch.manual_seed(2)
    x = torch.randn(2, 3, 299, 299)
    w_main, w_aux = torch.randn(2, 1000), torch.randn(2, 1000)

    def run(model):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # the same dropout mask for both
        out = model(x)
        loss = (out.logits * w_main).sum() + 0.3 * (out.aux_logits * w_aux).sum()
        loss.backward()
        return out, {k: p.grad.clone() for k, p in model.named_parameters()}

    got, got_grads = run(ours)
    want, want_grads = run(ref)
    assert type(got).__name__.endswith("Outputs") and got._fields == ("logits", "aux_logits")
    assert (got.logits - want.logits).abs().max().item() <= 1e-5
    assert (got.aux_logits - want.aux_logits).abs().max().item() <= 1e-5
    assert got_grads.keys() == want_grads.keys()
    worst = max((got_grads[k] - want_grads[k]).abs().max().item() for k in want_grads)
    assert worst <= 1e-5
    # Every weight took part, the aux head's included.
    assert all(g.abs().sum() > 0 for k, g in got_grads.items() if k.endswith("weight"))


# ---------------------------------------------------------------- initialisation

def _std_tolerance(n: int) -> float:
    """Loose relative tolerance on a sample std of n draws (≈ 6 standard errors, at least 10%)."""
    return max(0.10, 6 / math.sqrt(2 * n))


def _expected_std(name: str) -> float:
    # Only the aux head's nn.Linear carries `stddev` (0.001); AuxLogits.conv1's 0.01 sits
    # on the BasicConv2d wrapper, which torchvision's init loop does not look at.
    return 0.001 if name == "AuxLogits.fc" else 0.1


def test_weight_statistics_match_torchvision_init(path, pair):
    torch.manual_seed(4)
    ours = netdsl.build(path)
    ref = pair[1]  # fresh torchvision weights: no test changes them
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
