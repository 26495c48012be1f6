"""specs/mobilenet_v3*.net is torchvision's MobileNetV3: the squeeze-and-excitation's
gate sits where torchvision's does, and every width and tail variant of the family
has torchvision's parameter count. (Large and Small against torchvision's, strict
load, eval and training outputs with dropout, and gradients, are rows of
test_zoo.py.)"""

from pathlib import Path

import pytest
import torch
import torchvision

import netdsl
from netdsl.analysis import count_params

SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "mobilenet_v3_small"])
def test_the_gate_is_named_as_torchvisions(name):
    ours = netdsl.build(str(SPECS / f"{name}.net"), resolution=64, device="meta")
    with torch.device("meta"):
        ref = getattr(torchvision.models, name)()
    assert "features.4.block.2.scale_activation" in dict(ours.named_modules())
    assert [n for n, _ in ours.named_modules() if n.endswith("scale_activation")] == \
        [n for n, _ in ref.named_modules() if n.endswith("scale_activation")]


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
