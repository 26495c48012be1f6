"""specs/efficientnet*.net is torchvision's EfficientNet: B0 and B1 have
docs/specs.md's reference counts and input sizes and torchvision's
stochastic-depth rates; in training, stochastic depth draws and gradients reach
the gates and residual bodies; B2-B7 have torchvision's parameter counts, norms
and stochastic-depth rates; the standard library's blocks are torchvision's.
(B0 and B1 against torchvision's, in eval and training mode with stochastic depth
and dropout drawing the same numbers and with gradients, are rows of
test_zoo.py, as is ResNet-50's gradient check; its downsample's gradient is here,
beside EfficientNet's gates and residuals.)"""

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import netdsl
from netdsl.analysis import analyse
from netdsl.testing import randomise_norms

SPECS = Path(__file__).resolve().parents[2] / "specs"

# docs/specs.md's reference figures (torchvision 0.29.1, fvcore 0.1.5): input side, params, fvcore total, keys.
FIGURES = {
    "efficientnet_b0": (224, 5_288_548, 401_659_392, 360),
    "efficientnet_b1": (240, 7_794_184, 712_732_416, 508),
}
# Input resolution of B0-B7 in Tan & Le (2019), Table 2 and section 4.
RESOLUTION = [224, 240, 260, 300, 380, 456, 528, 600]


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_counts_equal_networks_md(name):
    side, params, macs, keys = FIGURES[name]
    net = netdsl.compile(str(SPECS / f"{name}.net"))
    a = analyse(net)
    assert tuple(a.input) == (3, side, side)
    assert (a.params, a.macs) == (params, macs)
    ours = netdsl.build(str(SPECS / f"{name}.net"), device="meta")
    assert ours.input_shape == (3, side, side)
    assert len(ours.state_dict()) == keys
    assert "features.1.0.block.1.fc1.weight" in ours.state_dict()


def _meta_pair(name):
    ours = netdsl.build(str(SPECS / f"{name}.net"), device="meta")
    with torch.device("meta"):
        ref = getattr(torchvision.models, name)()
    return ours, ref


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_stochastic_depth_rates_and_residuals_match_torchvision(name):
    ours, ref = _meta_pair(name)
    got = {n: m.p for n, m in ours.named_modules() if n.endswith(".stochastic_depth")}
    # torchvision gives every MBConv a StochasticDepth, but only a residual one uses it.
    want = {f"{n}.stochastic_depth": m.stochastic_depth.p for n, m in ref.named_modules()
            if type(m).__name__ == "MBConv" and m.use_res_connect}
    assert got == want
    assert max(want.values()) > 0.1


@pytest.mark.slow
def test_training_mode_draws_updates_statistics_and_reaches_gates_and_residuals():
    # What the comparisons of test_zoo.py take for granted: stochastic depth really draws
    # (the features alone, no dropout, differ by seed), batch norm updates its running
    # statistics, and the gate (squeeze-and-excitation) and the residual body carry gradient.
    torch.manual_seed(0)
    ours = netdsl.build(str(SPECS / "efficientnet_b0.net"), input=[3, 64, 64]).train()
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    before = ours.features[0][1].running_mean.clone()
    with torch.no_grad():
        torch.manual_seed(8)
        a = ours.features(x)
        torch.manual_seed(9)
        b = ours.features(x)
    assert not torch.allclose(a, b)
    assert not torch.equal(ours.features[0][1].running_mean, before)
    torch.manual_seed(11)
    target = torch.randint(0, 1000, (4,), generator=torch.Generator().manual_seed(4))
    nn.functional.cross_entropy(ours(x), target).backward()
    grads = dict(ours.named_parameters())
    assert grads["features.2.1.block.2.fc1.weight"].grad.abs().sum() > 0
    assert grads["features.2.1.block.3.0.weight"].grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("variant", range(2, 8), ids=[f"b{v}" for v in range(2, 8)])
def test_larger_variants_match_torchvision(variant):
    ours = netdsl.build(str(SPECS / "efficientnet.net"), variant=variant, device="meta")
    with torch.device("meta"):
        ref = getattr(torchvision.models, f"efficientnet_b{variant}")()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in ref.state_dict().items()]
    norms = lambda m: [(n, x.eps, x.momentum) for n, x in m.named_modules()  # noqa: E731
                       if isinstance(x, nn.BatchNorm2d)]
    assert norms(ours) == norms(ref)
    assert ours.classifier[0].p == ref.classifier[0].p
    sd = {n: m.p for n, m in ours.named_modules() if n.endswith(".stochastic_depth")}
    assert sd == {f"{n}.stochastic_depth": m.stochastic_depth.p for n, m in ref.named_modules()
                  if type(m).__name__ == "MBConv" and m.use_res_connect}
    assert ours.input_shape == (3, RESOLUTION[variant], RESOLUTION[variant])


def test_a_variant_is_b0_with_other_numbers():
    # Setting B1's coefficients on B0 gives B1; the variant only chooses defaults.
    b1 = netdsl.compile(str(SPECS / "efficientnet_b1.net"))
    again = netdsl.compile(str(SPECS / "efficientnet.net"), depth=1.1, resolution=240)
    assert analyse(b1).rows == analyse(again).rows
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile(str(SPECS / "efficientnet.net"), variant=8)
    assert [d.code for d in info.value.diagnostics] == ["E0212", "E0501"]


@pytest.mark.parametrize("args, kwargs", [
    ("16, 3, stride = 2", dict(kernel_size=3, stride=2)),
    ("16, 5, dilation = 2, activation = silu", dict(kernel_size=5, dilation=2,
                                                   activation_layer=nn.SiLU)),
    ("16, 1, norm = false, activation = none", dict(kernel_size=1, norm_layer=None,
                                                    activation_layer=None)),
    ("16, 3, activation = sigmoid, inplace = none, eps = 1e-3, momentum = 0.01",
     dict(kernel_size=3, activation_layer=nn.Sigmoid, inplace=None,
          norm_layer=lambda c: nn.BatchNorm2d(c, eps=1e-3, momentum=0.01))),
])
def test_std_conv2d_norm_activation_is_torchvisions(args, kwargs):
    from torchvision.ops import Conv2dNormActivation

    ours = netdsl.build('import "std/blocks.net"\nnetwork n() { input [8, 12, 12]\n'
                        f' c: conv2d_norm_activation({args}) }}').c
    ref = randomise_norms(Conv2dNormActivation(8, 16, **kwargs), 6)
    assert str(ours).split("\n", 1)[1] == str(ref).split("\n", 1)[1]  # same children, same settings
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 8, 12, 12, generator=torch.Generator().manual_seed(6))
    ours.eval(), ref.eval()
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))


def test_std_squeeze_excitation_is_torchvisions():
    from torchvision.ops import SqueezeExcitation

    ours = netdsl.build('import "std/blocks.net"\nnetwork n() { input [8, 6, 6]\n'
                        ' se: squeeze_excitation(2) }').se
    ref = SqueezeExcitation(8, 2)
    # (torchvision registers fc2 before the activation; no parameter order depends on it)
    assert {n: type(m) for n, m in ours.named_children()} == \
        {n: type(m) for n, m in ref.named_children()}
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
