"""ResNeXt-50 32x4d and Wide ResNet-50-2 through the resnet family spec:
torchvision's state_dict loads strictly, counts and eval outputs agree, and
training-mode outputs and gradients agree (once for the family)."""

import pytest
import torch
import torchvision
from torch.testing import assert_close

import netdsl


@pytest.mark.parametrize("name", ["resnext50_32x4d", "wide_resnet50_2"])
def test_torchvision_weights_load_strictly_and_outputs_agree(spec_path, name):
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)()
    model = netdsl.build(spec_path(name))
    model.load_state_dict(ref.state_dict(), strict=True)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())
    assert len(model.state_dict()) == len(ref.state_dict())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(model.eval()(x), ref.eval()(x), atol=1e-5, rtol=1e-4)
    if name == "resnext50_32x4d":
        x = x[:, :, :32, :32]
        ours, theirs = model.train()(x), ref.train()(x)
        assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
        ours.square().mean().backward()
        theirs.square().mean().backward()
        grads = dict(ref.named_parameters())
        for k, p in model.named_parameters():
            assert_close(p.grad, grads[k].grad, atol=1e-4, rtol=1e-3, msg=k)
