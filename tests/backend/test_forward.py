"""The one forward (netdsl/backend/forward.py): a built model runs Python source
written from the spec, the same lines `netdsl export --format python` prints, and a
failure inside it names the spec line it comes from."""

import importlib.util
import inspect
import pickle
import re
import sys
import textwrap
import traceback
import warnings
from pathlib import Path

import pytest
import torch
from shipped import grant_for
from slow_cases import slow_except

import netdsl
from netdsl.backend.codegen import class_name, generate
from netdsl.backend.fuse import fuse
from netdsl.backend.runtime import InputShapeError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
MEMBERS = sorted((ROOT / "specs").glob("*.net"))
# The shipped specs the fast subset runs (one of each kind of dataflow); the rest are slow.
FAST_SPECS = ("lenet5", "resnet50_fpn", "shufflenet_v2_x0_5", "dla60", "unet")


def _forwards(model) -> dict[str, str]:
    """The dedented forward source of each class of ``model`` that has one of its own."""
    out = {}
    for m in model.modules():
        recipe = type(m).__dict__.get("_recipe")
        if recipe is not None and recipe[4] is not None:
            out[textwrap.dedent(recipe[4])] = type(m).__name__
    return out


def _exported_forwards(source: str) -> set[str]:
    """The dedented ``def forward`` bodies of a generated file."""
    found = set()
    for m in re.finditer(r"^    def forward\(.*?(?=^\S|^    def |\Z)", source, re.M | re.S):
        found.add(textwrap.dedent(m.group(0)).rstrip("\n") + "\n")
    return found


def _exported_classes(source: str) -> dict[str, str]:
    """Each class of a generated file with its dedented ``def forward``."""
    found = {}
    for m in re.finditer(r"^class (\w+)\(.*?(?=^\S|\Z)", source, re.M | re.S):
        fwd = re.search(r"^    def forward\(.*?(?=^    def |\Z)", m.group(0), re.M | re.S)
        if fwd is not None:
            found[m.group(1)] = textwrap.dedent(fwd.group(0)).rstrip("\n") + "\n"
    return found


def _load(source: str, tmp_path: Path, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", slow_except(MEMBERS, FAST_SPECS), ids=lambda p: p.stem)
def test_build_runs_the_forwards_export_writes(path, tmp_path):
    # Every module of a built model runs, line for line, the forward of the class the
    # exported file gives the module at its place: the two come from one writer and one
    # decision of which instances share a class (netdsl/backend/forms.py), so they
    # cannot drift apart. And the modules the export gives one class share one class
    # object in the built model, as torchvision's Bottlenecks do.
    model = netdsl.build(str(path), device="meta", grant=grant_for(path))
    source = generate(str(path), grant=grant_for(path))
    classes = _exported_classes(source)
    module = _load(source, tmp_path, path.stem)
    with torch.device("meta"):
        exported = getattr(module, class_name(type(model).__name__))()
    shared: dict[type, set[type]] = {}
    for name, m in model.named_modules():
        recipe = type(m).__dict__.get("_recipe")
        if recipe is None or recipe[4] is None:
            continue
        theirs = type(exported.get_submodule(name))
        assert textwrap.dedent(recipe[4]) == classes[theirs.__name__], \
            f"{name or 'the network'} ({type(m).__name__}) does not run the forward of the export's {theirs.__name__}"
        shared.setdefault(theirs, set()).add(type(m))
    for theirs, ours in shared.items():
        assert len(ours) == 1, f"the modules of the export's {theirs.__name__} have {len(ours)} classes"


def test_inspect_shows_the_forward_with_its_spec_lines():
    model = netdsl.build(str(ROOT / "specs" / "resnet50.net"), device="meta")
    block = inspect.getsource(type(model.layer1[0]).forward)
    assert block.startswith("def forward(self, x):\n")
    assert "out = self.conv1(x)  # " in block and re.search(r"out \+= identity  # \S+resnet\.net:\d+", block)
    assert "x = torch.flatten(x, 1)" in inspect.getsource(type(model).forward)


def test_a_failure_in_a_forward_names_the_spec_line_and_the_statement():
    # unet was checked for 256x256; at 200x200 a skip and its up-sampled map cannot line up.
    model = netdsl.build(str(ROOT / "specs" / "unet.net")).eval()
    with pytest.raises(InputShapeError) as e, torch.no_grad():
        model(torch.randn(1, 1, 200, 200))
    (note,) = e.value.__notes__
    assert re.search(r"specs/unet\.net:\d+: `concat\(", note), note
    assert "in Unet.forward" in note
    # The traceback's frame of the forward shows the statement and its spec line.
    frames = traceback.extract_tb(e.value.__cause__.__traceback__)
    ours = [f for f in frames if f.filename.startswith("<netdsl: ")]
    assert ours and re.search(r"# \S*specs/unet\.net:\d+$", ours[-1].line)


def test_a_failure_that_is_not_the_inputs_keeps_its_type_and_gets_the_note(monkeypatch):
    model = netdsl.build("network n() { input [3, 8, 8]\n c: conv2d(4, 3)\n relu }")

    def broken(self, x):
        raise RuntimeError("boom")

    monkeypatch.setattr(type(model.c), "forward", broken)
    with pytest.raises(RuntimeError, match="boom") as e:
        model(torch.randn(1, 3, 8, 8))
    assert type(e.value) is RuntimeError
    assert any("<spec>:2" in n and "self.c(x)" in n for n in e.value.__notes__)


def test_a_wrong_rank_is_refused_before_anything_runs():
    model = netdsl.build("network n() { input [3, 8, 8]\n c: conv2d(4, 3) }")
    with pytest.raises(InputShapeError, match="one sample without its batch dimension"):
        model(torch.randn(3, 8, 8))


def test_a_body_of_many_branches_gets_distinct_names_for_each():
    # Names were found by counting up from 2 each time: quadratic in the branches, which
    # made a 10,000-branch concat take seconds to write.
    from netdsl.backend.forward import write

    net = netdsl.compile("network n() { input [1, 4, 4]\n concat { for i in range(3000) { conv2d(1, 1) } } }")
    src = write(net.body, net).text()
    names = re.findall(r"^        (branch\d*) = ", src, re.M)
    assert len(names) == 3000 and len(set(names)) == 3000


def test_nine_named_inputs_and_keyword_calls():
    # A built model had a forward for at most eight inputs (KeyError: 9 past them).
    names = [f"s{k}" for k in range(9)]
    spec = "network n() {\n" + "".join(f" input {n}: [1, 4, 4]\n" for n in names) + \
           f" add({', '.join(names)})\n}}"
    model = netdsl.build(spec)
    assert list(inspect.signature(model.forward).parameters) == names
    xs = {n: torch.full((1, 1, 4, 4), float(k)) for k, n in enumerate(names)}
    assert model(**xs).flatten()[0].item() == sum(range(9))
    assert torch.equal(model(*xs.values()), model(**xs))


def test_a_reused_scale_multiplies_by_the_same_parameter():
    # `reuse` of a `scale` label failed with KeyError at build.
    model = netdsl.build("network n() { input [4, 2, 2]\n s: scale(init = 0.5)\n relu\n reuse s }")
    assert [n for n, _ in model.named_parameters()] == ["s"]
    x = torch.ones(1, 4, 2, 2)
    assert torch.equal(model(x), torch.full((1, 4, 2, 2), 0.25))


# ---------------------------------------------------------------- the forward against the IR

def _same(a, b) -> bool:
    """Equal to the bit, NaN where NaN, through tuples and dicts alike."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b, strict=True))
    return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


def _differential(text_or_path, **kwargs):
    import ir_eval

    net = netdsl.compile(str(text_or_path), **kwargs)
    torch.manual_seed(0)
    model = netdsl.build(str(text_or_path), **kwargs).eval()
    for m in model.modules():  # batch norm that is not an identity
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    xs = [torch.randn(2, *i.shape) for i in net.inputs] or [torch.randn(2, *net.input_shape)]
    with torch.no_grad():
        want, got = ir_eval.evaluate(net, model, *xs), model(*xs)
    assert _same(got, want), "the built model's forward differs from the IR's evaluation"


SMALL = {"resnet": (3, 32, 32), "resnet34": (3, 32, 32), "resnet50": (3, 32, 32), "densenet": (3, 32, 32),
         "densenet121": (3, 32, 32), "efficientnet": (3, 32, 32), "efficientnet_b0": (3, 32, 32),
         "efficientnet_b1": (3, 32, 32), "resnext50_32x4d": (3, 32, 32), "wide_resnet50_2": (3, 32, 32),
         "regnet": (3, 32, 32), "regnet_x_400mf": (3, 32, 32), "regnet_y_400mf": (3, 32, 32),
         "mobilenet_v2": (3, 32, 32), "mnasnet": (3, 32, 32), "mnasnet1_0": (3, 32, 32),
         "shufflenet_v2": (3, 32, 32), "unet": (1, 32, 32), "unet_paper": (1, 188, 188), "resnet50_fpn": (3, 64, 64),
         "lraspp_mobilenet_v3_large": (3, 64, 64), "googlenet": (3, 64, 64), "convnext": (3, 32, 32),
         "convnext_tiny": (3, 32, 32), "vgg": (3, 32, 32), "vgg16": (3, 32, 32), "vgg16_bn": (3, 32, 32),
         "resnet_d": (3, 32, 32), "resnet50d": (3, 32, 32), "ecaresnet101d": (3, 32, 32),
         "sknet": (3, 32, 32), "skresnet18": (3, 32, 32), "resnest": (3, 32, 32),
         "resnest26d": (3, 32, 32), "tf_efficientnet": (3, 33, 33), "tf_efficientnet_b3": (3, 33, 33),
         "res2net": (3, 32, 32), "res2net50_14w_8s": (3, 32, 32), "nf_resnet": (3, 32, 32),
         "nf_resnet26": (3, 32, 32), "inception_resnet": (3, 75, 75), "inception_resnet_v2": (3, 75, 75),
         "cs3darknet": (3, 32, 32), "cs3darknet_m": (3, 32, 32), "dpn": (3, 32, 32), "dpn92": (3, 32, 32),
         "ghostnet": (3, 64, 64), "ghostnetv2_100": (3, 64, 64),
         "dla": (3, 32, 32), "dla60": (3, 32, 32), "hrnet": (3, 32, 32), "hrnet_w18": (3, 32, 32),
         "tresnet": (3, 32, 32), "tresnet_m": (3, 32, 32)}


@pytest.mark.parametrize("path", slow_except(MEMBERS, FAST_SPECS), ids=lambda p: p.stem)
def test_every_shipped_spec_computes_what_its_ir_says(path):
    # Found this way: a network of one named input that read it again by name
    # (`from image`, later `add(y, image)`) had its input's variable written over.
    shape = SMALL.get(path.stem)
    _differential(path, grant=grant_for(path), **({"input": shape} if shape else {}))


@pytest.mark.parametrize("strategy", ["dataflow", "layers", "sharing", "tensor"])
def test_generated_specs_compute_what_their_ir_says(strategy):
    import random

    import fuzz_specs

    compiled = 0
    for seed in range(300):
        text = fuzz_specs.GENERATORS[strategy](random.Random(seed))
        try:
            netdsl.compile(text, limits=netdsl.Limits(max_params=2_000_000))
        except netdsl.NetdslError:
            continue
        compiled += 1
        _differential(text)
    assert compiled >= 20  # the generators aim at errors too; enough of them compile


def test_a_single_named_input_read_again_by_name_is_not_written_over():
    spec = "network n() { input image: [3, 8, 8]\n from image\n c: conv2d(3, 1) -> y\n add(y, image) }"
    model = netdsl.build(spec).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), model.c(x) + x)


# ---------------------------------------------------------------- blocks of several tensors

SEVERAL = """
block fuse(c) {
    input x
    input skip
    from x
    conv: conv2d(c, 3, padding = 1, bias = false)
    bn: batchnorm2d -> y
    add(y, skip) -> s
    from s
    relu: relu -> out
    output tuple(out, s)
}

block head(c) {
    input x
    from x
    conv2d(c, 1)
}

network two_streams() {
    input [4, 8, 8]
    stem: conv2d(4, 3, padding = 1) -> skip
    body: conv2d(4, 3, padding = 1) -> x
    from x, skip
    fuse1: fuse(4) -> a, b
    from a, b
    fuse2: fuse(4) -> c, d
    concat(c, d, b)
    h: head(2)
}
"""


def test_a_block_of_several_tensors_is_called_and_unpacked_as_written_by_hand():
    model = netdsl.build(SEVERAL).eval()
    net_src = inspect.getsource(type(model).forward)
    assert "a, b = self.fuse1(x2, skip)  # <spec>:" in net_src and "c, d = self.fuse2(a, b)  # " in net_src
    block_src = inspect.getsource(type(model.fuse1).forward)
    assert block_src.startswith("def forward(self, x, skip):\n") and "s = y + skip  # <spec>:" in block_src
    assert block_src.rstrip().endswith("return out, s")
    # One `input`: the current result, taken by its name.
    assert inspect.getsource(type(model.h).forward).startswith("def forward(self, x):\n")
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        skip, body = model.stem(x), model.body(model.stem(x))
        s1 = model.fuse1.bn(model.fuse1.conv(body)) + skip
        s2 = model.fuse2.bn(model.fuse2.conv(torch.relu(s1))) + s1
        want = getattr(model.h, "0")(torch.cat([torch.relu(s2), s2, s1], 1))
        assert torch.equal(model(x), want)
    assert [k for k in model.state_dict() if k.startswith("fuse1.")] == [
        "fuse1.conv.weight", "fuse1.bn.weight", "fuse1.bn.bias", "fuse1.bn.running_mean",
        "fuse1.bn.running_var", "fuse1.bn.num_batches_tracked"]


def test_a_block_of_several_tensors_computes_what_its_ir_says():
    _differential(SEVERAL)


# -- forms of a block that differ only in optional modules: one class, as torchvision's

def _blocks(model, cls_name: str) -> list:
    return [m for m in model.modules() if type(m).__name__ == cls_name]


def test_resnet50_s_bottlenecks_share_one_class_whose_downsample_is_none_where_absent():
    model = netdsl.build(str(ROOT / "specs" / "resnet50.net"), device="meta")
    blocks = [b for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer]
    assert len(blocks) == 16 and len({type(b) for b in blocks}) == 1  # as torchvision's Bottleneck
    assert type(model.layer1[0]) is type(model.layer1[1])
    first, other = model.layer1[0], model.layer1[1]
    assert isinstance(first.downsample, torch.nn.Sequential)
    assert other.downsample is None  # torchvision's `self.downsample = None`
    # None is no submodule: no state_dict key, no named_modules entry, no line in print(model).
    assert "downsample" not in dict(other.named_children())
    assert not any(k.startswith("downsample.") for k in other.state_dict())
    assert "downsample" not in repr(other) and "(downsample): Sequential(" in repr(first)
    # Its forward is, word for word, the exported class's.
    exported = _exported_classes(generate(str(ROOT / "specs" / "resnet50.net")))
    assert textwrap.dedent(inspect.getsource(type(other).forward)) == exported["Bottleneck"]
    assert "    if self.downsample is not None:\n        identity = self.downsample(x)" in exported["Bottleneck"]


@pytest.mark.parametrize("spec, cls, optional", [
    ("ghostnet", "GhostBottleneck", ("conv_dw", "bn_dw", "se", "shortcut")),
    ("regnet_y_400mf", "ResBottleneckBlock", ("proj",)),
    ("resnet34", "BasicBlock", ("downsample",)),
])
def test_the_forms_of_a_block_share_one_class_object(spec, cls, optional):
    model = netdsl.build(str(ROOT / "specs" / f"{spec}.net"), device="meta")
    blocks = _blocks(model, cls)
    assert len(blocks) > 2 and len({type(b) for b in blocks}) == 1
    for name in optional:
        held = [b._modules.get(name) for b in blocks]
        assert any(m is not None for m in held) and any(m is None for m in held), name
        for b, m in zip(blocks, held, strict=True):
            assert getattr(b, name) is m  # None where the form lacks it, not missing


@pytest.mark.slow
def test_a_shared_class_keeps_to_pytorch_s_habits():
    # TorchScript, FX, dynamo without a graph break, hooks, pickle and fusing, each on a
    # model whose Bottleneck runs `if self.downsample is not None`.
    torch.manual_seed(0)
    model = netdsl.build(str(ROOT / "specs" / "resnet50.net")).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
            scripted = torch.jit.script(model)
        assert torch.equal(scripted(x), expected)
        graph = torch.fx.symbolic_trace(model)
        names = [n.name for n in graph.graph.nodes]
        assert "layer1_0_downsample_0" in names and not any(n.startswith("layer1_1_downsample") for n in names)
        assert torch.equal(graph(x), expected)
        explained = torch._dynamo.explain(model)(x)
        assert explained.graph_break_count == 0 and explained.graph_count == 1
        calls = []
        hook = model.layer1[0].downsample.register_forward_hook(lambda *a: calls.append(1))
        model(x)
        hook.remove()
        assert calls == [1]
        twin = pickle.loads(pickle.dumps(model))
        assert len({type(b) for layer in (twin.layer1, twin.layer4) for b in layer}) == 1
        assert twin.layer1[1].downsample is None and torch.equal(twin(x), expected)
        fused = fuse(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-4)
