"""specs/squeezenet.net is torchvision's SqueezeNet in both versions: parameters and
state_dict keys and shapes in order, and another version is refused.
(squeezenet1_0.net and squeezenet1_1.net, which select them, against torchvision's
are rows of test_zoo.py.)"""

from pathlib import Path

import pytest
import torch
import torchvision

import netdsl

SPECS = Path(__file__).resolve().parents[2] / "specs"


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
