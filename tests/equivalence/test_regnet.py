"""RegNet: the family spec gives every RegNetX and RegNetY torchvision ships, its
widths computed in the spec by the paper's quantised linear rule: every member's
parameter and key counts equal torchvision's, the large ones counted from the IR
against torchvision built on the meta device. (The 400MF members against torchvision's, strict state_dict, eval
and training outputs with the running statistics, and gradients, are rows of
test_zoo.py.)"""

import functools
import inspect
import re

import pytest
import torch
from torch import nn
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
