"""The module tree is part of the contract: for each shipped spec with a
torchvision reference, FX node names (what hooks and create_feature_extractor
use) and module class names per path equal torchvision's.

Not covered, and why: DenseNet concatenates inside each dense layer in
torchvision, netdsl's `dense` concatenates in the block; EfficientNet and
RegNet are built from torchvision.ops classes (Conv2dNormActivation,
SqueezeExcitation, StochasticDepth) that torchvision's feature extraction
traces as single leaf nodes, which only those very classes can be. Their class
names per path are still checked (RegNet)."""

import warnings

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import get_graph_node_names

import netdsl

FX_EQUAL = ["alexnet", "vgg16", "resnet34", "resnet50", "resnext50_32x4d", "wide_resnet50_2",
            "googlenet", "inception_v3"]
CLASSES_EQUAL = FX_EQUAL + ["regnet_x_400mf", "regnet_y_400mf"]


def _pair(spec_path, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GoogLeNet's init warning
        # RegNet computes its widths with tensors, which the meta device cannot read back.
        with torch.device("cpu" if name.startswith("regnet") else "meta"):
            ref = getattr(torchvision.models, name)()
    return netdsl.build(spec_path(name), device="meta"), ref


@pytest.mark.parametrize("name", FX_EQUAL)
def test_fx_node_names_equal_torchvisions_in_train_and_eval(spec_path, name):
    ours, ref = _pair(spec_path, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "eval nodes are a subsequence of train nodes"
        assert get_graph_node_names(ours) == get_graph_node_names(ref)


@pytest.mark.parametrize("name", CLASSES_EQUAL)
def test_module_paths_and_class_names_equal_torchvisions(spec_path, name):
    ours, ref = _pair(spec_path, name)
    tree = lambda m: {path: type(sub).__name__ for path, sub in m.named_modules()}  # noqa: E731
    assert tree(ours) == tree(ref)
    assert sum(1 for _ in ours.named_modules()) == sum(1 for _ in ref.named_modules())


def test_a_reused_module_is_one_module_called_again():
    model = netdsl.build("network n() { input [2, 4, 4]\n act: relu\n conv: conv2d(2, 1)\n"
                         " reuse act\n reuse conv\n apply flatten }")
    calls = []
    model.act.register_forward_hook(lambda *a: calls.append("act"))
    model.conv.register_forward_hook(lambda *a: calls.append("conv"))
    out = model(torch.randn(1, 2, 4, 4))
    assert calls == ["act", "conv", "act", "conv"]
    assert [n for n, _ in model.named_children()] == ["act", "conv"]
    assert out.shape == (1, 32)
    assert get_graph_node_names(model)[1] == ["x", "act", "conv", "act_1", "conv_1", "flatten"]


# What netdsl cannot reproduce, and why: torchvision's _DenseBlock is a ModuleDict
# subclass that a labelled `dense` group cannot name; torchvision's MBConv registers
# a StochasticDepth even where it has no residual to drop, and never calls it.
KNOWN_GAPS = {
    "densenet121": lambda path, cls: cls == "_DenseBlock",
    "efficientnet_b0": lambda path, cls: path.endswith(".stochastic_depth") and
    path.split(".")[2] == "0",
}


@pytest.mark.parametrize("name", sorted(KNOWN_GAPS))
def test_module_trees_differ_only_where_netdsl_cannot_follow(spec_path, name):
    ours, ref = _pair(spec_path, name)
    a = {path: type(sub).__name__ for path, sub in ours.named_modules()}
    b = {path: type(sub).__name__ for path, sub in ref.named_modules()}
    assert set(a) <= set(b)
    differing = {(p, b[p]) for p in b if a.get(p) != b[p]}
    assert differing and all(KNOWN_GAPS[name](p, cls) for p, cls in differing)
