"""specs/mnasnet.net is torchvision's MNASNet at every width it ships, and
mnasnet1_0.net selects 1.0: strict load, equal parameter and key counts, eval
outputs within 1e-5 absolute and 1e-4 relative, training-mode outputs under one
seed (dropout and batch norm's TensorFlow momentum included), and gradients."""

from pathlib import Path

import pytest
import torch
import torchvision

import netdsl
from netdsl.testing import assert_equivalent, randomise_norms

SPECS = Path(__file__).resolve().parents[2] / "specs"

# docs/specs.md's reference figures (torchvision 0.29.1): params, state_dict keys.
PARAMS, KEYS = 4_383_312, 314


def test_mnasnet1_0_is_torchvisions():
    torch.manual_seed(0)
    ref = randomise_norms(torchvision.models.mnasnet1_0(), 1)
    report = assert_equivalent(str(SPECS / "mnasnet1_0.net"), ref, input=(3, 64, 64))
    assert sum(p.numel() for p in ref.parameters()) == PARAMS and len(ref.state_dict()) == KEYS
    for title in ("eval outputs", "training outputs"):
        check = report.check(title)
        assert check.max_abs <= 1e-5 and check.max_rel <= 1e-4 and check.details == [], title
    assert report.check("gradients").max_abs <= 1e-5


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


def test_a_width_of_0_75_is_equivalent_too():
    # The rounding of widths to multiples of 8 is where the widths differ from 1.0.
    torch.manual_seed(2)
    ref = randomise_norms(torchvision.models.mnasnet0_75(), 3)
    report = assert_equivalent(str(SPECS / "mnasnet.net"), ref, input=(3, 64, 64), alpha=0.75,
                               gradients=False, train=False)
    assert report.check("eval outputs").max_rel <= 1e-4
