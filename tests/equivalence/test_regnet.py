"""RegNet: the family spec gives every RegNetX and RegNetY torchvision ships, its
widths computed in the spec by the paper's quantised linear rule. The 400MF
members are equivalent to torchvision's (strict state_dict, eval and training
outputs, gradients); every member's parameter and key counts equal
torchvision's, the large ones counted from the IR against torchvision built on
the meta device."""

import functools
import inspect
import re

import pytest
import torch
import torchvision
from torch import nn
from torch.testing import assert_close
from torchvision.models import regnet as tv

import netdsl
from netdsl.analysis import count_params

VARIANTS = [n[len("regnet_"):] for n in tv.__all__ if n.startswith("regnet_")]


def _reference_on_meta(variant: str) -> nn.Module:
    # torchvision's constructor computes the widths with tensors, which cannot be read
    # back on the meta device: compute them on the CPU, allocate the model on meta.
    source = inspect.getsource(getattr(tv, "regnet_" + variant))
    call = re.search(r"from_init_params\((.*?),?\s*\*\*kwargs", source, re.S).group(1)
    kwargs = dict(re.findall(r"(\w+)=([\d.]+)", call))
    params = tv.BlockParams.from_init_params(**{k: float(v) if "." in v else int(v)
                                                for k, v in kwargs.items()})
    with torch.device("meta"):
        return tv.RegNet(params, norm_layer=functools.partial(nn.BatchNorm2d, eps=1e-5,
                                                              momentum=0.1))


def test_the_family_has_every_torchvision_variant():
    assert len(VARIANTS) == 15


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_and_key_counts_equal_torchvisions(spec_path, variant):
    ref = _reference_on_meta(variant)
    net = netdsl.compile(spec_path("regnet"), variant=f'"{variant}"')
    assert count_params(net) == sum(p.numel() for p in ref.parameters())
    if variant.endswith("mf"):  # small enough to build here; the keys are the state_dict's
        model = netdsl.build(spec_path("regnet"), variant=f'"{variant}"', device="meta")
        assert list(model.state_dict()) == list(ref.state_dict()) or \
            sorted(model.state_dict()) == sorted(ref.state_dict())


@pytest.mark.parametrize("name", ["regnet_x_400mf", "regnet_y_400mf"])
def test_400mf_is_torchvisions(spec_path, name):
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)()
    model = netdsl.build(spec_path(name))
    model.load_state_dict(ref.state_dict(), strict=True)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())
    assert len(model.state_dict()) == len(ref.state_dict())
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(model.eval()(x), ref.eval()(x), atol=1e-5, rtol=1e-4)
    # training mode: batch statistics, and the running statistics they update
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    ours, theirs = model.train()(x), ref.train()(x)
    assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    theirs_state = ref.state_dict()
    for k, a in model.state_dict().items():
        assert_close(a, theirs_state[k], atol=1e-6, rtol=1e-5, msg=k)
    if name == "regnet_y_400mf":  # gradients, once for the family
        ours.sum().backward()
        theirs.sum().backward()
        grads = dict(ref.named_parameters())
        for k, p in model.named_parameters():
            assert_close(p.grad, grads[k].grad, atol=1e-4, rtol=1e-3, msg=k)
