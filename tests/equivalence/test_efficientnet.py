"""specs/efficientnet*.net is torchvision's EfficientNet: B0 and B1 take
torchvision's weights with strict=True and give the same outputs in eval and
in training mode (stochastic depth and dropout drawing the same random
numbers), the same gradients, and docs/specs.md's reference counts; B2-B7 have
torchvision's parameter counts, norms and stochastic-depth rates. ResNet-50's
gradients are checked here too, beside EfficientNet's gates and residuals."""

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import netdsl
from netdsl.analysis import analyse

SPECS = Path(__file__).resolve().parents[2] / "specs"

# docs/specs.md's reference figures (torchvision 0.29.1, fvcore 0.1.5): input side, params, fvcore total, keys.
FIGURES = {
    "efficientnet_b0": (224, 5_288_548, 401_659_392, 360),
    "efficientnet_b1": (240, 7_794_184, 712_732_416, 508),
}
# Input resolution of B0-B7 in Tan & Le (2019), Table 2 and section 4.
RESOLUTION = [224, 240, 260, 300, 380, 456, 528, 600]


def _randomise(model: nn.Module, seed: int) -> None:
    """Give every norm non-trivial statistics and affine terms, so that eval mode
    really exercises eps and the running buffers (fresh ones are 0 and 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture(scope="module", params=sorted(FIGURES))
def pair(request):
    """(name, our model carrying torchvision's weights, torchvision's model)."""
    name = request.param
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)()
    _randomise(ref, 1)
    ours = netdsl.build(str(SPECS / f"{name}.net"))
    ours.load_state_dict(ref.state_dict(), strict=True)
    return name, ours, ref


def test_state_dict_keys_and_shapes_match_torchvision(pair):
    _, ours, ref = pair
    got = [(k, tuple(v.shape)) for k, v in ours.state_dict().items()]
    want = [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    assert got == want
    assert "features.1.0.block.1.fc1.weight" in dict(got)


def test_counts_equal_networks_md(pair):
    name, ours, _ = pair
    side, params, macs, keys = FIGURES[name]
    assert ours.input_shape == (3, side, side)
    assert sum(p.numel() for p in ours.parameters()) == params
    assert len(ours.state_dict()) == keys
    a = analyse(netdsl.compile(str(SPECS / f"{name}.net")))
    assert (a.params, a.macs) == (params, macs)


def test_eval_outputs_agree(pair):
    name, ours, ref = pair
    side = FIGURES[name][0]
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got, want = ours(x), ref(x)
    assert got.shape == want.shape == (2, 1000)
    assert (got - want).abs().max().item() <= 1e-5
    assert want.std().item() > 1e-3  # not a constant output that anything would match


def test_training_mode_agrees_with_stochastic_depth_active(pair):
    _, ours, ref = pair
    ours.train(), ref.train()
    before = {k: v.clone() for k, v in ref.state_dict().items()}
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.manual_seed(7)
        got = ours(x)
        torch.manual_seed(7)
        want = ref(x)
        assert (got - want).abs().max().item() <= 1e-5
        # Batch norm updated its running statistics with the same momentum.
        for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
            assert torch.allclose(a.float(), b.float(), atol=1e-6), k
        assert not torch.equal(ref.features[0][1].running_mean, before["features.0.1.running_mean"])
        # Stochastic depth really drew: the features alone (no dropout) differ by seed.
        torch.manual_seed(8)
        a = ours.features(x)
        torch.manual_seed(9)
        b = ours.features(x)
        assert not torch.allclose(a, b)
    ours.load_state_dict(before)  # leave the shared pair as the fixture made it
    ref.load_state_dict(before)


def test_stochastic_depth_rates_and_residuals_match_torchvision(pair):
    _, ours, ref = pair
    got = {n: m.p for n, m in ours.named_modules() if n.endswith(".stochastic_depth")}
    # torchvision gives every MBConv a StochasticDepth, but only a residual one uses it.
    want = {f"{n}.stochastic_depth": m.stochastic_depth.p for n, m in ref.named_modules()
            if type(m).__name__ == "MBConv" and m.use_res_connect}
    assert got == want
    assert max(want.values()) > 0.1


def _grads(model, x, target, seed):
    model.train()
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    grads = {k: p.grad for k, p in model.named_parameters()}
    return loss.detach(), x.grad, grads


def _assert_same_gradients(ours, ref, x, target):
    loss_a, gx_a, ga = _grads(ours, x, target, seed=11)
    loss_b, gx_b, gb = _grads(ref, x, target, seed=11)
    assert abs(loss_a.item() - loss_b.item()) <= 1e-5
    assert (gx_a - gx_b).abs().max().item() <= 1e-5
    assert ga.keys() == gb.keys()
    for k in ga:
        assert (ga[k] - gb[k]).abs().max().item() <= 1e-5, k
    return ga


def test_efficientnet_b0_gradients_agree():
    torch.manual_seed(0)
    ref = torchvision.models.efficientnet_b0()
    ours = netdsl.build(str(SPECS / "efficientnet_b0.net"))
    ours.load_state_dict(ref.state_dict(), strict=True)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 3, 64, 64, generator=g)
    target = torch.randint(0, 1000, (4,), generator=g)
    grads = _assert_same_gradients(ours, ref, x, target)
    # The gate (squeeze-and-excitation) and the residual body both carry gradient.
    assert grads["features.2.1.block.2.fc1.weight"].abs().sum() > 0
    assert grads["features.2.1.block.3.0.weight"].abs().sum() > 0


def test_resnet50_gradients_agree():
    torch.manual_seed(0)
    ref = torchvision.models.resnet50()
    ours = netdsl.build(str(SPECS / "resnet50.net"))
    ours.load_state_dict(ref.state_dict(), strict=True)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 64, 64, generator=g)
    target = torch.randint(0, 1000, (2,), generator=g)
    grads = _assert_same_gradients(ours, ref, x, target)
    assert grads["layer1.0.downsample.0.weight"].abs().sum() > 0


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
    ref = Conv2dNormActivation(8, 16, **kwargs)
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
