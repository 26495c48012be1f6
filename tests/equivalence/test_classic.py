"""The VGG and ResNet families: every member torchvision ships has its state_dict
keys and shapes, a depth the family does not have is refused, gradient reaches
ResNet-50's downsample, and a built model is an ordinary module. (LeNet-5,
AlexNet, VGG-16, VGG-16-BN and ResNet-34/50 against their references are rows of
test_zoo.py.)"""

import pytest
import torch
import torchvision

import netdsl


@pytest.mark.parametrize("depth, batch_norm, reference", [
    (11, False, torchvision.models.vgg11), (13, True, torchvision.models.vgg13_bn),
    (19, False, torchvision.models.vgg19), (16, True, torchvision.models.vgg16_bn),
])
def test_vgg_family_members(spec_path, depth, batch_norm, reference):
    model = netdsl.build(spec_path("vgg"), device="meta", depth=depth, batch_norm=batch_norm)
    with torch.device("meta"):
        ref = reference()
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
        [(k, v.shape) for k, v in ref.state_dict().items()]


@pytest.mark.parametrize("overrides, reference", [
    ({"depth": 18}, torchvision.models.resnet18), ({"depth": 101}, torchvision.models.resnet101),
    ({"depth": 152}, torchvision.models.resnet152),
    ({"depth": 50, "groups": 32, "width_per_group": 4}, torchvision.models.resnext50_32x4d),
    ({"depth": 50, "width_per_group": 128}, torchvision.models.wide_resnet50_2),
])
def test_resnet_family_members(spec_path, overrides, reference):
    model = netdsl.build(spec_path("resnet"), device="meta", **overrides)
    with torch.device("meta"):
        ref = reference()
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
        [(k, v.shape) for k, v in ref.state_dict().items()]


@pytest.mark.slow
def test_resnet50_downsample_carries_gradient(spec_path):
    torch.manual_seed(0)
    ours = netdsl.build(spec_path("resnet50"), input=[3, 64, 64]).train()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 64, 64, generator=g)
    target = torch.randint(0, 1000, (2,), generator=g)
    torch.nn.functional.cross_entropy(ours(x), target).backward()
    assert ours.layer1[0].downsample[0].weight.grad.abs().sum() > 0


def test_vgg_family_refuses_a_depth_it_does_not_have(spec_path):
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile(spec_path("vgg"), depth=17)
    assert info.value.diagnostics[0].code == "E0501"
    assert "11, 13, 16 and 19" in info.value.diagnostics[0].message


@pytest.mark.slow
def test_built_model_is_an_ordinary_module(spec_path):
    import copy

    model = netdsl.build(spec_path("resnet34")).eval()
    twin = copy.deepcopy(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))
        twin.fc.weight.zero_()
        twin.fc.bias.zero_()
        assert not torch.equal(model(x), twin(x))   # the copy's plan uses the copy's modules
        assert twin(x).abs().max().item() == 0
    assert type(model.layer1[0]).__name__ == "BasicBlock"
    assert "BasicBlock(" in repr(model)
