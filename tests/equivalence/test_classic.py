"""LeNet-5, AlexNet, VGG-16, VGG-16-BN and ResNet-34/50: the spec-built model is the
reference network. torchvision's state_dict loads with strict=True, outputs
agree, and parameter and key counts equal the reference figures of docs/specs.md
(netdsl.testing.assert_equivalent does the loading and comparing)."""

import pytest
import torch
import torchvision
from torch import nn

import netdsl
from netdsl.testing import assert_equivalent, randomise_norms

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
    # Strict load, equal parameter counts and eval outputs of one sample (seed 1).
    report = assert_equivalent(spec_path(name), ref, input=shape, batch=1, seed=1, train=False,
                               gradients=False)
    assert sum(p.numel() for p in ref.parameters()) == params
    assert len(ref.state_dict()) == keys
    assert report.check("eval outputs").max_abs <= 1e-5  # absolute alone, as well


@pytest.mark.parametrize("name, reference", [("resnet34", torchvision.models.resnet34),
                                             ("resnet50", torchvision.models.resnet50)])
def test_batch_norm_running_statistics_update_the_same_way(spec_path, name, reference):
    # Training mode exercises the residual adds and batch statistics; the check compares
    # the running statistics after the step too, here within 1e-6.
    ref = reference().train()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    report = assert_equivalent(spec_path(name), ref, input=x, atol=1e-6, rtol=0, gradients=False)
    assert report.check("training outputs").ok


def test_vgg16_bn_is_torchvisions(spec_path):
    # Batch norm after each conv; dropout in the classifier under one seed; gradients.
    torch.manual_seed(0)
    ref = randomise_norms(torchvision.models.vgg16_bn(), 1)
    report = assert_equivalent(spec_path("vgg16_bn"), ref, input=(3, 32, 32))
    assert sum(p.numel() for p in ref.parameters()) == 138_365_992 and len(ref.state_dict()) == 97
    for title in ("eval outputs", "training outputs"):
        check = report.check(title)
        assert check.max_abs <= 1e-5 and check.max_rel <= 1e-4 and check.details == [], title


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
    report = assert_equivalent(spec_path("lenet5"), ref, batch=4, seed=3, atol=1e-6, rtol=0)
    assert sum(p.numel() for p in ref.parameters()) == 61_706
    assert len(ref.state_dict()) == 10
    assert report.check("gradients").ok


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
