"""specs/mobilenet_v3*.net is torchvision's MobileNetV3: Large and Small take
torchvision's weights with strict=True and give the same outputs in eval and in
training mode (dropout drawing the same random numbers) and, for Large, the
same gradients; every width and tail variant of the family has torchvision's
parameter count."""

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import netdsl
from netdsl.analysis import count_params

SPECS = Path(__file__).resolve().parents[2] / "specs"
# Small inputs keep the test fast; MobileNetV3 takes any size of 32 or more.
SIDE = 64


def _randomise(model: nn.Module, seed: int) -> None:
    """Non-trivial batch-norm statistics and affine terms (fresh ones are 0 and 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture(scope="module", params=["mobilenet_v3_large", "mobilenet_v3_small"])
def pair(request):
    """(name, our model carrying torchvision's weights, torchvision's model)."""
    name = request.param
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)()
    _randomise(ref, 1)
    ours = netdsl.build(str(SPECS / f"{name}.net"), resolution=SIDE)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return name, ours, ref


def test_state_dict_keys_shapes_and_counts_match_torchvision(pair):
    _, ours, ref = pair
    got = [(k, tuple(v.shape)) for k, v in ours.state_dict().items()]
    want = [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    assert got == want
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert "features.4.block.2.scale_activation" in dict(ours.named_modules())


def test_eval_outputs_agree(pair):
    _, ours, ref = pair
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got, want = ours(x), ref(x)
    assert got.shape == want.shape == (2, 1000)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_training_outputs_agree_under_one_seed(pair):
    _, ours, ref = pair
    ours.train(), ref.train()
    x = torch.randn(4, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(3))
    outs = []
    for model in (ours, ref):
        torch.manual_seed(7)  # the classifier's dropout draws the same mask
        with torch.no_grad():
            outs.append(model(x.clone()))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-4)
    ours.eval(), ref.eval()


def test_gradients_agree():
    torch.manual_seed(0)
    ref = torchvision.models.mobilenet_v3_large()
    _randomise(ref, 4)
    ours = netdsl.build(str(SPECS / "mobilenet_v3_large.net"), resolution=SIDE)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(5))
    w = torch.randn(2, 1000, generator=torch.Generator().manual_seed(6))
    for model in (ours, ref):
        model.train()
        torch.manual_seed(8)
        (model(x) * w).sum().backward()
    theirs = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name].grad, atol=1e-5, rtol=1e-4, msg=name)


# torchvision's constructor arguments for each member the family can make.
MEMBERS = [
    ("mobilenet_v3_large", {}, {}),
    ("mobilenet_v3_small", {"small": True}, {}),
    ("mobilenet_v3_large", {"reduced_tail": True, "dilated": True},
     {"reduced_tail": True, "dilated": True}),
    ("mobilenet_v3_small", {"small": True, "reduced_tail": True}, {"reduced_tail": True}),
    ("mobilenet_v3_large", {"width": 0.75, "num_classes": 10}, {"width_mult": 0.75, "num_classes": 10}),
]


@pytest.mark.parametrize("name, ours, theirs", MEMBERS)
def test_every_member_has_torchvisions_parameter_count(name, ours, theirs):
    ref = getattr(torchvision.models, name)(**theirs)
    net = netdsl.compile(str(SPECS / "mobilenet_v3.net"), **ours)
    assert count_params(net) == sum(p.numel() for p in ref.parameters())
