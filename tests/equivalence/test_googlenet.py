"""GoogLeNet: torchvision's state_dict loads strictly, eval outputs agree, and in
training the outputs come in torchvision's order and names,
GoogLeNetOutputs(logits, aux_logits2, aux_logits1), with equal values and
gradients under one seed (the aux heads' dropout draws included)."""

import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from torch.testing import assert_close

import netdsl


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's init_weights FutureWarning
        ref = torchvision.models.googlenet()
    model = netdsl.build(str(Path(__file__).resolve().parents[2] / "specs" / "googlenet.net"))
    model.load_state_dict(ref.state_dict(), strict=True)
    return model, ref


def test_weights_load_strictly_and_eval_outputs_agree(pair):
    model, ref = pair
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())
    assert len(model.state_dict()) == len(ref.state_dict())
    x = torch.randn(1, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(model.eval()(x), ref.eval()(x), atol=1e-5, rtol=1e-4)


def test_training_outputs_take_torchvisions_order_names_values_and_gradients(pair):
    model, ref = pair
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(3)
    ours = model.train()(x)
    torch.manual_seed(3)
    theirs = ref.train()(x)
    assert type(ours).__name__ == type(theirs).__name__ == "GoogLeNetOutputs"
    assert ours._fields == theirs._fields == ("logits", "aux_logits2", "aux_logits1")
    for a, b in zip(ours, theirs, strict=True):
        assert_close(a, b, atol=1e-5, rtol=1e-4)
    sum(t.sum() for t in ours).backward()
    sum(t.sum() for t in theirs).backward()
    grads = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        assert_close(p.grad, grads[name].grad, atol=1e-4, rtol=1e-3, msg=name)
