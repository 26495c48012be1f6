"""specs/mnasnet.net is torchvision's MNASNet at every width it ships: parameters,
state_dict keys and shapes in order, and batch norm's TensorFlow momentum.
(mnasnet1_0.net, and the family at width 0.75, against torchvision's are rows of
test_zoo.py.)"""

from pathlib import Path

import pytest
import torch
import torchvision

import netdsl

SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.mark.parametrize("width", ["0_5", "0_75", "1_0", "1_3"])
def test_every_width_torchvision_ships(width):
    ours = netdsl.build(str(SPECS / "mnasnet.net"), device="meta", alpha=float(width.replace("_", ".")))
    with torch.device("meta"):
        ref = getattr(torchvision.models, f"mnasnet{width}")()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in ref.state_dict().items()]
    momenta = lambda m: [(n, x.momentum) for n, x in m.named_modules()  # noqa: E731
                         if isinstance(x, torch.nn.BatchNorm2d)]
    assert momenta(ours) == momenta(ref)
