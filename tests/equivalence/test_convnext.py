"""specs/convnext.net is torchvision's ConvNeXt family: every size torchvision ships
has its parameter count and state_dict keys, in order, and the layer scale is a
bare parameter of each block, as ``features.1.0.layer_scale``. (ConvNeXt-Tiny
against torchvision's, in eval and training mode with stochastic depth and with
gradients, is a row of test_zoo.py.)"""

from pathlib import Path

import pytest
import torch
import torchvision

import netdsl
from netdsl.analysis import count_params

SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_the_layer_scale_is_a_bare_parameter_of_each_block():
    ours = netdsl.build(str(SPECS / "convnext_tiny.net"), resolution=32, device="meta")
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes["features.1.0.layer_scale"] == (96, 1, 1)
    assert "features.1.0.layer_scale" in dict(ours.named_parameters())


@pytest.mark.parametrize("size, name", list(enumerate(["convnext_tiny", "convnext_small", "convnext_base",
                                                        "convnext_large"])))
def test_every_size_has_torchvisions_parameters_and_keys(size, name):
    with torch.device("meta"):  # counts only: no memory, no initialisation
        ref = getattr(torchvision.models, name)()
    net = netdsl.compile(str(SPECS / "convnext.net"), size=size)
    assert count_params(net) == sum(p.numel() for p in ref.parameters())
    ours = netdsl.build(str(SPECS / "convnext.net"), size=size, device="meta")
    assert list(ours.state_dict()) == list(ref.state_dict())
