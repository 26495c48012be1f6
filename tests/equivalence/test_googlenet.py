"""GoogLeNet: in training the outputs come as torchvision's do, in its order and
under its names, GoogLeNetOutputs(logits, aux_logits2, aux_logits1), and in eval
mode as a plain tensor. (Against torchvision's, strict load, eval and training
outputs with the aux heads' dropout, and gradients, are rows of test_zoo.py.)"""

import warnings
from pathlib import Path

import pytest
import torch
import torchvision

import netdsl

SPEC = str(Path(__file__).resolve().parents[2] / "specs" / "googlenet.net")


@pytest.mark.slow
def test_training_outputs_take_torchvisions_type_and_names():
    ours = netdsl.build(SPEC, input=[3, 64, 64])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's init_weights FutureWarning
        ref = torchvision.models.googlenet(init_weights=False)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out, theirs = ours.train()(x), ref.train()(x)
        assert isinstance(ours.eval()(x), torch.Tensor)
    assert type(out).__name__ == type(theirs).__name__ == "GoogLeNetOutputs"
    assert out._fields == theirs._fields == ("logits", "aux_logits2", "aux_logits1")
