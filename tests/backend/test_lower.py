"""Lowering allocates parameter storage once, on the target device, and
initialises every parameter exactly once there; on the meta device it
allocates nothing at all."""

import importlib
import math
from pathlib import Path

import pytest
import torch
import torchvision
from shipped import grant_for
from slow_cases import slow_except
from torch import nn
from torch_ops import OpRecorder

import netdsl
from netdsl.backend.lower import lower
from netdsl.cli import main
from netdsl.layers import KINDS, LAYERS
from netdsl.layers.base import Kind

SPEC_DIR = Path(__file__).resolve().parents[2] / "specs"

# The first op of every torch.nn.init scheme writes the whole tensor with one of these
# (trunc_normal_ follows its uniform_ with in-place transforms of the same values).
_INIT_OPS = {"aten.uniform_.default", "aten.normal_.default", "aten.fill_.Scalar",
             "aten.zero_.default"}
_ALLOC_OPS = {"aten.empty.memory_format", "aten.empty_strided.default", "aten.empty_like.default",
              "aten.zeros.default", "aten.ones.default", "aten.full.default", "aten.lift_fresh.default",
              "aten.scalar_tensor.default"}


def _storage(t):
    return t.untyped_storage().data_ptr()


def _state(model):
    return dict(model.named_parameters()) | dict(model.named_buffers())


SPECS = ["lenet5", "alexnet", "vgg16", "resnet50"]


@pytest.mark.parametrize("name", SPECS)
def test_meta_build_allocates_no_storage(spec_path, name):
    net = netdsl.compile(spec_path(name))
    with OpRecorder() as rec:
        model = lower(net, device="meta")
    made = {t.device.type for _, _, outs in rec.ops for t in outs}
    assert made <= {"meta"}
    assert all(t.device.type == "meta" for t in _state(model).values())
    assert sum(p.numel() for p in model.parameters()) > 0


def test_cli_build_on_meta_allocates_no_storage(spec_path, capsys):
    with OpRecorder() as rec:
        assert main(["build", spec_path("vgg16"), "--device", "meta"]) == 0
    assert {t.device.type for _, _, outs in rec.ops for t in outs} <= {"meta"}
    assert "params:       138,357,544" in capsys.readouterr().out


@pytest.mark.parametrize("name", slow_except(SPECS, fast=("lenet5", "alexnet", "resnet50")))
def test_cpu_build_allocates_and_initialises_each_tensor_once(spec_path, name):
    net = netdsl.compile(spec_path(name))
    with OpRecorder() as rec:
        model = lower(net, device="cpu")
    state = _state(model)
    owner = {_storage(t): k for k, t in state.items()}
    # Every byte the build allocated on the CPU is a parameter or buffer of the model.
    allocated = [t for op, _, outs in rec.ops if op in _ALLOC_OPS for t in outs
                 if t.device.type == "cpu"]
    assert sorted(_storage(t) for t in allocated if t.numel()) == sorted(
        _storage(t) for t in state.values() if t.numel())
    # ... and every parameter was written by exactly one initialisation.
    inits = {}
    for op, target, _ in rec.ops:
        if op in _INIT_OPS and isinstance(target, torch.Tensor) and _storage(target) in owner:
            k = owner[_storage(target)]
            inits[k] = inits.get(k, 0) + 1
    params = [k for k, _ in model.named_parameters()]
    assert {k: inits.get(k, 0) for k in params} == {k: 1 for k in params}


def test_batch_norm_buffers_start_at_their_defaults(spec_path):
    model = netdsl.build(spec_path("resnet50"))
    bn = model.layer1[0].bn1
    assert torch.equal(bn.running_mean, torch.zeros(64))
    assert torch.equal(bn.running_var, torch.ones(64))
    assert bn.num_batches_tracked.item() == 0
    assert torch.equal(bn.weight, torch.ones(64)) and torch.equal(bn.bias, torch.zeros(64))


def test_undeclared_parameters_get_the_modules_own_default_draws():
    # Declared: only the linear's bias. The weight must be drawn as nn.Linear draws it.
    src = """network n() {
        input [3, 4, 4]
        init linear.bias = zeros
        flatten
        fc: linear(10)
    }"""
    torch.manual_seed(0)
    ours = netdsl.build(src)
    torch.manual_seed(0)
    ref = nn.Linear(48, 10)
    assert torch.equal(ours.fc.weight, ref.weight)
    assert torch.equal(ours.fc.bias, torch.zeros(10))


def test_undeclared_bias_uses_the_fan_in_bound():
    src = """network n() {
        input [16, 8, 8]
        init conv2d.weight = zeros
        c: conv2d(8, 3)
    }"""
    torch.manual_seed(0)
    m = netdsl.build(src)
    bound = 1 / math.sqrt(16 * 3 * 3)
    assert torch.equal(m.c.weight, torch.zeros(8, 16, 3, 3))
    assert m.c.bias.abs().max().item() <= bound and m.c.bias.abs().max().item() > bound / 4


@pytest.mark.slow
def test_without_init_statements_the_draws_are_torchvisions(spec_path):
    # AlexNet declares no init: its modules draw their defaults in module order, as
    # torchvision's constructor does, so one seed gives the same weights.
    ours, theirs = _both_from_one_seed(torchvision.models.alexnet, spec_path("alexnet"))
    assert all(torch.equal(t, theirs[k]) for k, t in ours.items())


def _both_from_one_seed(reference, spec) -> tuple[dict, dict]:
    """The state_dicts of the spec's model and of ``reference()``, each made after seed 0."""
    torch.manual_seed(0)
    theirs = reference().state_dict()
    torch.manual_seed(0)
    return netdsl.build(spec).state_dict(), theirs


def test_build_follows_the_default_device():
    net = netdsl.compile("network n() { input [3, 8, 8]\n c: conv2d(4, 3)\n bn: batchnorm2d }")
    with torch.device("meta"):
        model = lower(net)
    assert {t.device.type for t in _state(model).values()} == {"meta"}


def _reference_leaf(node, device):
    # What lowering built before it skipped reset_parameters on meta: torch's constructor.
    # An extern (KINDS, not LAYERS) is its class's constructor either way.
    kind = KINDS[node.kind]
    if not kind.factory or type(kind).build is not Kind.build:
        return kind.build(node, device)
    desc = kind.torch(node)
    mod, cls = desc.cls.rsplit(".", 1)
    return getattr(importlib.import_module(mod), cls)(**desc.kwargs, device=device)


# Every kind that owns tensors (LAYERS[k].factory), some with declared init, some not.
EVERY_FACTORY_KIND = """network n() {
    input [4, 8, 8]
    init conv2d.weight = kaiming_normal(mode = "fan_out")
    init group_norm.bias = constant(0.5)
    c: conv2d(8, 3, padding = 1)
    s: std_conv2d(8, 1, gain_init = 0.5)
    b: batchnorm2d
    p: prelu(per_channel = true)
    t: conv_transpose2d(4, 2, stride = 2)
    g: group_norm(2)
    i: instance_norm2d(affine = true, track_running_stats = true)
    l2: layer_norm2d
    l: layer_norm(dims = 2)
    flatten
    f: linear(3)
    b1: batchnorm1d
    apply unflatten(0, [1, -1])
    c1: conv1d(2, 3, padding = 1)
}"""


def test_skipping_reset_on_meta_covers_every_kind_with_tensors():
    kinds = {k for k, v in LAYERS.items() if v.factory}
    assert all(f"{k}(" in EVERY_FACTORY_KIND or f": {k}\n" in EVERY_FACTORY_KIND for k in kinds)


@pytest.mark.parametrize("spec", slow_except(["EVERY_FACTORY_KIND", "lenet5", "efficientnet_b0", "mobilenet_v3_small",
                                              "resnet34", "squeezenet1_1", "regnet_y_400mf"],
                                             fast=("EVERY_FACTORY_KIND", "lenet5", "mobilenet_v3_small",
                                                   "squeezenet1_1")))
def test_skipping_reset_on_meta_builds_the_same_values(spec, monkeypatch):
    # Differential: the same values under one seed as building each module with torch's
    # own constructor, which drew on meta first (every shipped spec's structure: below).
    path = EVERY_FACTORY_KIND if spec == "EVERY_FACTORY_KIND" else str(SPEC_DIR / f"{spec}.net")
    shape = None if spec in ("EVERY_FACTORY_KIND", "lenet5") else (3, 32, 32)
    torch.manual_seed(0)
    fast = netdsl.build(path, input=shape)
    monkeypatch.setattr(netdsl.backend.lower, "_leaf", _reference_leaf)
    monkeypatch.setattr(netdsl.backend.lower, "_copyable", lambda m, state: False)  # each by its constructor
    torch.manual_seed(0)
    ref = netdsl.build(path, input=shape)
    a, b = fast.state_dict(), ref.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", slow_except(sorted(p.stem for p in SPEC_DIR.glob("*.net"))))
def test_skipping_reset_on_meta_builds_the_same_modules(name, monkeypatch):
    path = str(SPEC_DIR / f"{name}.net")
    fast = netdsl.build(path, device="meta", grant=grant_for(path))
    monkeypatch.setattr(netdsl.backend.lower, "_leaf", _reference_leaf)
    monkeypatch.setattr(netdsl.backend.lower, "_copyable", lambda m, state: False)
    ref = netdsl.build(path, device="meta", grant=grant_for(path))
    assert [(k, type(m), sorted(vars(m))) for k, m in fast.named_modules()] == \
        [(k, type(m), sorted(vars(m))) for k, m in ref.named_modules()]
    assert [(k, t.shape) for k, t in fast.state_dict().items()] == \
        [(k, t.shape) for k, t in ref.state_dict().items()]


def test_copies_of_a_leaf_draw_as_torchvisions_constructor(spec_path):
    # 148 of ShuffleNet's 169 leaves are copies of the first of their configuration
    # (lowering's `_copy`); it declares no init, so each draw must be torchvision's own.
    ours, theirs = _both_from_one_seed(torchvision.models.shufflenet_v2_x0_5, spec_path("shufflenet_v2_x0_5"))
    assert list(ours) == list(theirs)
    assert all(torch.equal(t, theirs[k]) for k, t in ours.items())


def test_a_copied_leaf_shares_nothing_mutable_with_the_first():
    m = netdsl.build("network n() { input [3, 8, 8]\n a: conv2d(3, 3, padding = 1)\n b: conv2d(3, 3, padding = 1)\n"
                     " x: batchnorm2d\n y: batchnorm2d }")
    for first, copy in ((m.a, m.b), (m.x, m.y)):
        assert vars(first).keys() == vars(copy).keys()
        for k, v in vars(first).items():
            if isinstance(v, (dict, list, set, torch.Tensor)):
                assert v is not vars(copy)[k], k
        for (k, p), q in zip(first.named_parameters(), copy.parameters(), strict=True):
            assert p.data_ptr() != q.data_ptr() and p.shape == q.shape and type(p) is type(q), k
    m.b.register_forward_hook(lambda *a: None)
    assert not m.a._forward_hooks


def test_global_registration_hooks_see_every_parameter():
    seen = []
    handle = nn.modules.module.register_module_parameter_registration_hook(
        lambda module, name, param: seen.append(name))
    try:
        m = netdsl.build("network n() { input [3, 8, 8]\n a: conv2d(3, 3)\n b: conv2d(3, 3)\n c: conv2d(3, 3) }")
    finally:
        handle.remove()
    assert seen == ["weight", "bias"] * 3 and len(list(m.parameters())) == 6


@pytest.mark.parametrize("spec", ["EVERY_FACTORY_KIND", "SCALED"])
def test_a_cpu_build_leaves_no_tensor_on_meta(spec):
    # Only what was made on meta is allocated: the leaves with state, and the modules
    # holding a bare parameter (`scale`), here the network and a group.
    path = EVERY_FACTORY_KIND if spec == "EVERY_FACTORY_KIND" else """network n() {
        input [4, 8, 8]
        init conv2d.weight = zeros
        s: scale(init = 0.5)
        g: { c: conv2d(8, 3)\n t: scale(init = 2.0) }
    }"""
    model = netdsl.build(path, device="cpu")
    assert {k: t.device.type for k, t in _state(model).items()} == {k: "cpu" for k in _state(model)}
    if spec == "SCALED":
        assert torch.equal(model.s, torch.full((4, 1, 1), 0.5)) and torch.equal(model.g.t, torch.full((8, 1, 1), 2.0))


def test_an_extern_module_is_made_by_its_constructor_each_time(tmp_path, monkeypatch):
    # A copy runs no constructor: never for a class netdsl does not know.
    (tmp_path / "lowering_tags.py").write_text(
        "from torch import nn\nMADE = []\n\nclass Tag(nn.Module):\n    def __init__(self, k=1):\n"
        "        super().__init__()\n        self.k = k\n        MADE.append(self)\n\n"
        "    def forward(self, x):\n        return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import lowering_tags
    spec = 'extern tag = "lowering_tags.Tag"\nnetwork n() { input [3, 8, 8]\n a: tag(k = 2)\n b: tag(k = 2) }'
    m = netdsl.build(spec, grant=["lowering_tags"])
    assert any(t is m.a for t in lowering_tags.MADE) and any(t is m.b for t in lowering_tags.MADE)
