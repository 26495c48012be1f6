"""specs/squeezenet.net is torchvision's SqueezeNet in both versions, and
squeezenet1_0.net / squeezenet1_1.net select them: strict load, equal parameter and
key counts, eval outputs within 1e-5 absolute and 1e-4 relative, training-mode
outputs under one seed (dropout included), and gradients for one of them."""

from pathlib import Path

import pytest
import torch
import torchvision

import netdsl
from netdsl.testing import assert_equivalent

SPECS = Path(__file__).resolve().parents[2] / "specs"

# docs/specs.md's reference figures (torchvision 0.29.1): params, state_dict keys.
FIGURES = {"squeezenet1_0": (1_248_424, 52), "squeezenet1_1": (1_235_496, 52)}


def _reference(name):
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)()
    with torch.no_grad():
        # torchvision starts the final conv at std 0.01, which leaves every logit near
        # zero after its ReLU and average: scale it so that the outputs mean something.
        ref.classifier[1].weight.mul_(100)
    return ref


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_squeezenet_is_torchvisions(name):
    ref = _reference(name)
    report = assert_equivalent(str(SPECS / f"{name}.net"), ref, input=(3, 96, 96),
                               gradients=name == "squeezenet1_1")
    params, keys = FIGURES[name]
    assert sum(p.numel() for p in ref.parameters()) == params and len(ref.state_dict()) == keys
    for title in ("eval outputs", "training outputs"):
        check = report.check(title)
        assert check.max_abs <= 1e-5 and check.max_rel <= 1e-4 and check.details == [], title


@pytest.mark.parametrize("version", ["1_0", "1_1"])
def test_family_members_have_torchvisions_parameter_counts(version):
    ours = netdsl.build(str(SPECS / "squeezenet.net"), device="meta", version=f'"{version}"')
    with torch.device("meta"):
        ref = getattr(torchvision.models, f"squeezenet{version}")()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in ref.state_dict().items()]


def test_another_version_is_refused():
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile(str(SPECS / "squeezenet.net"), version='"1_2"')
    assert info.value.diagnostics[0].code == "E0501"
