"""LeNet-5, AlexNet, VGG-16 and ResNet-34/50: the spec-built model is the
reference network. torchvision's state_dict loads with strict=True, outputs
agree, and parameter and key counts equal the reference figures of docs/specs.md."""

import pytest
import torch
import torchvision
from torch import nn

import netdsl

# spec, torchvision constructor, input, params, state_dict keys (docs/specs.md, reference figures)
CASES = [
    ("alexnet", torchvision.models.alexnet, (3, 224, 224), 61_100_840, 16),
    ("vgg16", torchvision.models.vgg16, (3, 224, 224), 138_357_544, 32),
    ("resnet34", torchvision.models.resnet34, (3, 224, 224), 21_797_672, 218),
    ("resnet50", torchvision.models.resnet50, (3, 224, 224), 25_557_032, 320),
]


@pytest.mark.parametrize("name, reference, shape, params, keys", CASES, ids=[c[0] for c in CASES])
def test_torchvision_weights_load_strictly_and_outputs_agree(spec_path, name, reference, shape,
                                                             params, keys):
    torch.manual_seed(0)
    ref = reference().eval()
    model = netdsl.build(spec_path(name)).eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == keys
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(x), ref(x)
    assert ours.shape == theirs.shape == (1, 1000)
    assert (ours - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name, reference", [("resnet34", torchvision.models.resnet34),
                                             ("resnet50", torchvision.models.resnet50)])
def test_batch_norm_running_statistics_update_the_same_way(spec_path, name, reference):
    # Training mode exercises the residual adds and batch statistics.
    ref = reference().train()
    model = netdsl.build(spec_path(name)).train()
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    assert (model(x) - ref(x)).abs().max().item() <= 1e-5
    for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k


class LeNet5(nn.Module):
    """The article's layout, written by hand as the reference."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool1(torch.relu(self.conv1(x)))
        x = self.pool2(torch.relu(self.conv2(x)))
        return self.fc3(self.fc2(self.fc1(torch.flatten(x, 1))))


def test_lenet5_matches_the_article_layout(spec_path):
    ref = LeNet5()
    model = netdsl.build(spec_path("lenet5"))
    model.load_state_dict(ref.state_dict(), strict=True)
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert len(model.state_dict()) == 10
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    assert (model(x) - ref(x)).abs().max().item() <= 1e-6


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


def test_vgg_family_refuses_a_depth_it_does_not_have(spec_path):
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile(spec_path("vgg"), depth=17)
    assert info.value.diagnostics[0].code == "E0501"
    assert "11, 13, 16 and 19" in info.value.diagnostics[0].message


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
