"""Batch norm folded into convolutions: the same eval-mode function, and no training."""

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

import netdsl
from netdsl.fuse import FusedModelTrainingError, fuse

SPECS = Path(__file__).resolve().parent.parent / "specs"

# Every shipped network, at a small input it accepts (the function is the same at any size).
SHIPPED = {"lenet5": None, "alexnet": (3, 64, 64), "vgg16": (3, 32, 32), "resnet34": (3, 64, 64),
           "resnet50": (3, 64, 64), "inception_v3": None, "densenet121": (3, 64, 64),
           "efficientnet_b0": (3, 64, 64), "efficientnet_b1": (3, 64, 64),
           "resnet": (3, 32, 32), "vgg": (3, 32, 32), "densenet": (3, 32, 32), "efficientnet": (3, 32, 32),
           # reuse, apply, dataflow containers, split, several outputs, bare parameters
           **{name: (3, 64, 64) for name in (
               "convnext", "convnext_tiny", "googlenet", "mnasnet", "mnasnet1_0", "mobilenet_v2",
               "mobilenet_v3", "mobilenet_v3_large", "mobilenet_v3_small", "regnet", "regnet_x_400mf",
               "regnet_y_400mf", "resnet50_fpn", "resnext50_32x4d", "shufflenet_v2",
               "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
               "squeezenet", "squeezenet1_0", "squeezenet1_1", "unet", "vgg16_bn", "wide_resnet50_2")}}
# The libraries' own networks, where a setting makes them fold something else.
# The libraries' networks at their other settings (vgg with batch norm), or smaller ones:
# their defaults are the aliases' networks, tested already.
SETTINGS = {"vgg": {"batch_norm": True, "depth": 11}, "resnet": {"depth": 18},
            "densenet": {"growth_rate": 8, "num_init_features": 16, "block_config": [2, 2, 2, 2]}}


def _randomise_statistics(model: nn.Module, seed: int = 0) -> None:
    """Batch-norm statistics and affine parameters away from their identity defaults,
    so that folding them is not trivially right."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.2)


def _n_bn(model) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_every_shipped_spec_is_listed():
    assert {p.stem for p in SPECS.glob("*.net")} == set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_fused_outputs_match_unfused(name):
    torch.manual_seed(0)
    model = netdsl.build(str(SPECS / f"{name}.net"), input=SHIPPED[name], **SETTINGS.get(name, {}))
    _randomise_statistics(model)
    model.eval()
    shape = SHIPPED[name] or model.input_shape
    x = torch.randn(1, *shape)
    with torch.no_grad():
        expected = model(x)
        before = _n_bn(model)
        fused = fuse(model)
        got = fused(x)
    if before:
        assert _n_bn(fused) < before  # something was folded
    expected, got = _tensors(expected), _tensors(got)
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert (g - e).abs().max() <= 1e-4 * e.abs().max()


def _tensors(out) -> list:
    """A network's output as a list of tensors (a tuple, namedtuple or dict result too)."""
    if isinstance(out, dict):
        return list(out.values())
    return list(out) if isinstance(out, tuple) else [out]


def test_build_fuse_folds_every_conv_batchnorm_pair_of_resnet50():
    model = netdsl.build(str(SPECS / "resnet50.net"), input=(3, 32, 32), fuse=True)
    assert _n_bn(model) == 0
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert isinstance(model.layer1[0].bn1, nn.Identity)  # the names stay where they were
    assert not model.training


def test_a_batch_norm_after_something_else_stays():
    # DenseNet's pre-activation norms follow a concatenation or a pooling, not a convolution.
    model = netdsl.build(str(SPECS / "densenet121.net"), input=(3, 32, 32), fuse=True)
    assert isinstance(model.features.denseblock1.denselayer1.norm1, nn.BatchNorm2d)
    assert isinstance(model.features.denseblock1.denselayer1.norm2, nn.Identity)


def test_fused_model_refuses_training():
    model = netdsl.build(str(SPECS / "lenet5.net"), fuse=True)
    x = torch.randn(1, *model.input_shape)
    with pytest.raises(FusedModelTrainingError, match="fuse=True.*eval-mode"):
        model.train()
    model.eval()  # allowed
    nn.Module.train(model, True)  # round the guard: the forward call still refuses
    with pytest.raises(FusedModelTrainingError, match="build it without fuse to train"):
        model(x)


def test_fused_model_pickles_and_still_refuses():
    model = netdsl.build(str(SPECS / "resnet.net"), input=(3, 32, 32), depth=18,
                         fuse=True)
    x = torch.randn(1, 3, 32, 32)
    back = pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    with pytest.raises(FusedModelTrainingError):
        back.train()
