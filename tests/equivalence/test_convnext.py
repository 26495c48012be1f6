"""specs/convnext*.net is torchvision's ConvNeXt: Tiny takes torchvision's
weights with strict=True (the layer scale a bare parameter of each block, as
``features.1.0.layer_scale``) and gives the same outputs in eval and in
training mode (stochastic depth drawing the same random numbers) and the same
gradients; every size torchvision ships has its parameter count and keys."""

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import netdsl
from netdsl.analysis import count_params

SPECS = Path(__file__).resolve().parents[2] / "specs"
# torchvision's smallest input for ConvNeXt: the stem and three downsamplings divide by 32.
SIDE = 32


def _randomise(model: nn.Module, seed: int) -> None:
    """Layer scales and norm terms away from their fresh values: a layer scale of
    1e-6 would hide a wrong block behind the residual's identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_scale"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.25)
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):  # torchvision's LayerNorm2d too
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    ref = torchvision.models.convnext_tiny()
    _randomise(ref, 1)
    ours = netdsl.build(str(SPECS / "convnext_tiny.net"), resolution=SIDE)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def test_state_dict_keys_shapes_and_counts_match_torchvision(pair):
    ours, ref = pair
    got = [(k, tuple(v.shape)) for k, v in ours.state_dict().items()]
    want = [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    assert got == want
    assert dict(got)["features.1.0.layer_scale"] == (96, 1, 1)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


def test_eval_outputs_agree(pair):
    ours, ref = pair
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got, want = ours(x), ref(x)
    assert got.shape == want.shape == (2, 1000)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_training_outputs_and_gradients_agree_under_one_seed(pair):
    ours, ref = pair
    x = torch.randn(4, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(3))
    w = torch.randn(4, 1000, generator=torch.Generator().manual_seed(4))
    outs = []
    for model in (ours, ref):
        model.train()
        model.zero_grad()
        torch.manual_seed(7)  # stochastic depth draws the same rows
        out = model(x)
        (out * w).sum().backward()
        outs.append(out.detach())
        model.eval()
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-4)
    theirs = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name].grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("size, name", list(enumerate(["convnext_tiny", "convnext_small", "convnext_base",
                                                        "convnext_large"])))
def test_every_size_has_torchvisions_parameters_and_keys(size, name):
    with torch.device("meta"):  # counts only: no memory, no initialisation
        ref = getattr(torchvision.models, name)()
    net = netdsl.compile(str(SPECS / "convnext.net"), size=size)
    assert count_params(net) == sum(p.numel() for p in ref.parameters())
    ours = netdsl.build(str(SPECS / "convnext.net"), size=size, device="meta")
    assert list(ours.state_dict()) == list(ref.state_dict())
