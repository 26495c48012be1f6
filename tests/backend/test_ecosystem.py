"""A built model is an ordinary PyTorch model: torch.compile with no graph break,
torch.export, FX and torchvision's feature extractor with torchvision's node names,
TorchScript (script and trace), deepcopy, and ONNX through onnxruntime — for every
shipped network, at the small input bench/ecosystem.py gives it (the same table that
docs/cli.md's figures come from). Pickle and torch.save are tests/backend/test_pickle.py's.
"""

import copy
import io
import sys
import warnings
from pathlib import Path

import pytest
import torch

import netdsl

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from ecosystem import NETS, build, calibrate, spec  # noqa: E402
from shipped import grant_for  # noqa: E402

IDS = [n.name for n in NETS]

# Every shipped network through compile, export, tracing and ONNX: seconds each.
pytestmark = pytest.mark.slow


def _flat(out) -> list:
    """The tensors of a network's output: one, a (named) tuple, or a dict (in its order)."""
    if isinstance(out, dict):
        return [t for v in out.values() for t in _flat(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _flat(v)]
    return [out]


def _equal(a, b) -> bool:
    fa, fb = _flat(a), _flat(b)
    return len(fa) == len(fb) and all(torch.equal(x, y) for x, y in zip(fa, fb, strict=True)) and \
        (list(a) == list(b) if isinstance(a, dict) else True)


def test_the_table_covers_every_shipped_network():
    # Family files (resnet.net, vgg.net, ...) build one of these by default.
    shipped = {p.stem for p in (Path(__file__).resolve().parents[2] / "specs").glob("*.net")}
    families = {"resnet", "vgg", "densenet", "efficientnet", "mobilenet_v3", "shufflenet_v2",
                "squeezenet", "mnasnet", "regnet", "convnext", "resnet_d", "sknet", "resnest", "tf_efficientnet",
                "res2net", "nf_resnet", "inception_resnet", "cs3darknet", "dpn",
                "ghostnet", "dla", "tresnet", "hrnet"}
    assert shipped - families == set(IDS)


def test_the_table_grants_what_a_spec_needs_and_no_more():
    # timm.layers to a spec that declares an extern, nothing to one that does not.
    assert [list(n.grant) or None for n in NETS] == [grant_for(spec(n)) for n in NETS]


class Case:
    def __init__(self, net):
        torch.manual_seed(0)
        self.net = net
        self.model = calibrate(build(net), net.input)
        self.x = torch.randn(2, *net.input, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            self.y = self.model(self.x)


@pytest.fixture(scope="module", params=NETS, ids=IDS)
def case(request):
    # Module scope: pytest runs every test of one network before building the next,
    # so only one model (VGG-16: half a gigabyte) is alive at a time.
    return Case(request.param)


# torch.compile and ONNX export take seconds a network on two cores: they run on one
# network per construct (residual with reuse/apply, sides, dense, split, layer scale
# and permute, named results, a dict of outputs; blocks of several tensors in
# test_a_block_of_several_tensors_in_every_tool, since DLA-60's depth takes torch's
# own float32 result 1.8e-4 of its scale from float64's, past this test's 1e-4 for
# ONNX); `python bench/ecosystem.py` gives the figures of every shipped network
# (docs/cli.md), and test_onnx_export.py exports every tensor layer.
HEAVY = ("lenet5", "resnet50", "densenet121", "efficientnet_b0", "googlenet", "shufflenet_v2_x0_5",
         "convnext_tiny", "unet", "resnet50_fpn")


@pytest.fixture(scope="module", params=[n for n in NETS if n.name in HEAVY],
                ids=[n for n in IDS if n in HEAVY])
def heavy_case(request):
    return Case(request.param)


def test_torch_compile_has_one_graph_and_no_break(heavy_case):
    case = heavy_case
    torch._dynamo.reset()
    explained = torch._dynamo.explain(case.model)(case.x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    # Inductor's C++ compile takes tens of seconds a network on two cores: here the
    # graph dynamo captures runs as it is; test_inductor compiles one network.
    compiled = torch.compile(case.model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(_flat(compiled(case.x)), _flat(case.y))


def test_inductor():
    net = NETS[0]
    c = Case(net)
    torch._dynamo.reset()
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(c.model, fullgraph=True)(c.x), c.y)


def test_torch_export_and_its_save_load_round_trip(case):
    program = torch.export.export(case.model, (case.x,))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    buf.seek(0)
    loaded = torch.export.load(buf)
    assert loaded.module().state_dict().keys() == case.model.state_dict().keys()
    with torch.no_grad():
        assert _equal(loaded.module()(case.x), case.y)


def test_fx_symbolic_trace(case):
    traced = torch.fx.symbolic_trace(case.model)
    # Eval mode: a side head (Inception v3's AuxLogits) is not called, so not copied.
    assert traced.state_dict().keys() <= case.model.state_dict().keys()
    with torch.no_grad():
        assert _equal(traced(case.x), case.y)


def _hooked(model, names, x):
    """Each named module's output, by forward hooks: no tracing involved."""
    seen = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: seen.__setitem__(n, o)) for n in names]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def test_create_feature_extractor_with_torchvision_node_names(case):
    from torchvision import models
    from torchvision.models.feature_extraction import create_feature_extractor

    nodes = list(case.net.nodes)
    with torch.no_grad():
        ours = create_feature_extractor(case.model, return_nodes=nodes)(case.x)
    assert list(ours) == nodes
    if case.net.reference is None:  # LeNet-5: torchvision has none; hooks are the reference
        expected = _hooked(case.model, nodes, case.x)
    else:
        kwargs = {"aux_logits": True, "init_weights": False} if case.net.name == "inception_v3" else {}
        try:
            with torch.device("meta"):  # no time spent initialising weights it is given
                ref = getattr(models, case.net.reference)(**kwargs)
        except NotImplementedError:  # RegNet computes its widths with tensors: build it for real
            ref = getattr(models, case.net.reference)(**kwargs)
        ref.load_state_dict(case.model.state_dict(), strict=True, assign=True)
        with torch.no_grad():
            expected = create_feature_extractor(ref.eval(), return_nodes=nodes)(case.x)
    for n in nodes:
        assert torch.equal(ours[n], expected[n]), n


def test_jit_trace(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
        # strict=False: a dict of outputs (a detection backbone's) has a fixed structure here
        traced = torch.jit.trace(case.model, case.x, check_trace=False, strict=False)
    with torch.no_grad():
        assert _equal(traced(case.x), case.y)


def test_deepcopy_is_equal_and_independent(case):
    twin = copy.deepcopy(case.model)
    with torch.no_grad():
        assert _equal(twin(case.x), case.y)
        for ours, theirs in zip(twin.parameters(), case.model.parameters(), strict=True):
            assert ours is not theirs and torch.equal(ours, theirs)
        next(twin.parameters()).zero_()
        assert next(case.model.parameters()).any()


# -- TorchScript: netdsl's blocks wire their children with plan objects, which
# torch.jit.script cannot compile; Network and Block hand it their FX graph instead
# (modules.py, __prepare_scriptable__). Scripting is slow (Inception v3: 30 s on two
# cores), so this runs on the networks that cover every combinator and a spec that
# has all of them, side outputs included; bench/ecosystem.py scripts every network.

SCRIPTED = ["lenet5", "resnet50", "efficientnet_b0"]

MIXED = """
block res(c) {
    residual { conv2d(c, 3, padding = 1)\n batchnorm2d\n relu } shortcut proj if in_channels != c { conv2d(c, 1) }
    gate { adaptive_avgpool2d(1)\n conv2d(c, 1)\n sigmoid }
    stochastic_depth(0.5)
}
network mixed() {
    input [3, 16, 16]
    stem: conv2d(8, 3, padding = 1)
    side aux { adaptive_avgpool2d(1)\n flatten\n linear(4) }
    stage: { res(16)\n res(16) }
    concat { { conv2d(4, 1) }\n { maxpool2d(3, stride = 1, padding = 1) } }
    dense { { batchnorm2d\n conv2d(4, 3, padding = 1) } * 2 }
    adaptive_avgpool2d(1)
    flatten
    dropout(0.5)
    fc: linear(10)
}
"""


def _script(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
        return torch.jit.script(model)


@pytest.mark.parametrize("name", SCRIPTED)
def test_jit_script(name):
    c = Case(next(n for n in NETS if n.name == name))
    scripted = _script(c.model)
    assert scripted.state_dict().keys() == c.model.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(scripted(c.x), c.y)


def test_jit_script_keeps_training_behaviour_and_side_outputs():
    model = netdsl.build(MIXED)
    x = torch.randn(4, 3, 16, 16)
    for training in (True, False):
        model.train(training)
        scripted = _script(model)
        torch.manual_seed(3)
        expected = model(x)
        torch.manual_seed(3)
        got = scripted(x)
        if training:  # dropout and stochastic depth draw the same numbers; aux is returned
            assert got._fields == ("logits", "aux")
            assert torch.equal(got.logits, expected.logits) and torch.equal(got.aux, expected.aux)
        else:
            assert torch.equal(got, expected)
    # Dropout and stochastic depth follow the scripted module's own mode.
    scripted.train()
    torch.manual_seed(3)
    assert not torch.equal(scripted(x), model.eval()(x))


def test_a_block_scripts_on_its_own():
    model = netdsl.build(MIXED).eval()
    block = model.stage[0]
    x = torch.randn(2, 8, 16, 16)  # the stem gives 8 channels
    with torch.no_grad():
        assert torch.equal(_script(block)(x), block(x))


# A block of several tensors: a module called with two and returning a tuple, unpacked.
SEVERAL = """
block fuse(c) {
    input x
    input skip
    from x
    conv: conv2d(c, 3, padding = 1, bias = false)
    bn: batchnorm2d -> y
    add(y, skip) -> s
    from s
    relu -> out
    output tuple(out, s)
}
network several() {
    input [3, 16, 16]
    stem: conv2d(8, 3, padding = 1) -> skip
    body: conv2d(8, 1) -> x
    from x, skip
    fuse1: fuse(8) -> a, b
    from a, b
    fuse2: fuse(8) -> c, d
    chunk(d) -> d0, d1
    concat(c, d1, d0, b)
    adaptive_avgpool2d(1)
    flatten
    fc: linear(10)
}
"""


def test_a_block_of_several_tensors_in_every_tool(tmp_path):
    # (and a `chunk` into named parts, whose parts are swapped: a tuple unpacked in the forward)
    torch.manual_seed(0)
    model = netdsl.build(SEVERAL).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        y = model(x)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    with torch.no_grad():
        assert torch.equal(torch.compile(model, backend="eager", fullgraph=True)(x), y)
        exported = torch.export.export(model, (x,)).module()
        assert torch.equal(exported(x), y)
        traced = torch.fx.symbolic_trace(model)
        assert torch.equal(traced(x), y)
        # One call of each block's convolution: the tuple is unpacked, not the block run twice.
        calls = [n for n in traced.graph.nodes if n.op == "call_module" and n.target.endswith(".conv")]
        assert [n.target for n in calls] == ["fuse1.conv", "fuse2.conv"]
        assert torch.equal(_script(model)(x), y)
        assert torch.equal(_script(model.fuse1)(y.new_ones(2, 8, 4, 4), y.new_ones(2, 8, 4, 4))[1],
                           model.fuse1(y.new_ones(2, 8, 4, 4), y.new_ones(2, 8, 4, 4))[1])
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'netdsl[onnx]'")
    from netdsl.backend.onnx import export

    path = export(model, x, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert (torch.from_numpy(out) - y).abs().max() <= 1e-4 * max(1.0, y.abs().max().item())


def test_onnx_export_runs_in_onnxruntime_to_1e_4(heavy_case, tmp_path):
    case = heavy_case
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'netdsl[onnx]'")
    from netdsl.backend.onnx import export

    path = export(case.model, case.x, tmp_path / "model.onnx")  # onnx.checker runs inside
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    # The batch dimension is free: one sample runs too, as in the exported batch of 2.
    for n in (2, 1):
        outs = [torch.from_numpy(o) for o in session.run(None, {name: case.x[:n].numpy()})]
        ys = [y[:n] for y in _flat(case.y)]
        assert len(outs) == len(ys)  # a dict of outputs comes out as one output each, in order
        for out, y in zip(outs, ys, strict=True):
            # 1e-4 of the outputs' scale: Inception v3's logits (up to 7) differ by up to
            # 2.9e-4 where one is near 0, as much as torch's own float32 result differs
            # from float64 (docs/cli.md).
            assert out.shape == y.shape
            assert (out - y).abs().max() <= 1e-4 * max(1.0, y.abs().max().item())


def test_summary_totals_are_torchinfos(case, capsys):
    # torchinfo is a test-only aid (the `test` extra): the reference for these figures.
    torchinfo = pytest.importorskip("torchinfo")
    from netdsl.cli import main

    granted = [a for g in case.net.grant for a in ("--allow-module", g)]
    assert main(["check", spec(case.net), "--input", ",".join(map(str, case.net.input)),
                 "--format", "json", *granted]) == 0
    ours = __import__("json").loads(capsys.readouterr().out)
    stats = torchinfo.summary(case.model, input_size=(1, *case.net.input), verbose=0)
    # torchinfo sizes the input as sys.getsizeof(its storage): the data and the
    # storage object's own header, which netdsl leaves out (64 B, under 0.01 MB).
    header = sys.getsizeof(torch.empty(0).untyped_storage())
    input_bytes = stats.total_input - header
    # torchinfo sizes the parameters of the layers the forward ran; in eval mode a side
    # head (Inception v3's AuxLogits) does not run, yet its parameters are the model's.
    leaves = [m for m in case.model.modules() if not list(m.children())]
    ran = set()
    handles = [m.register_forward_hook(lambda m, i, o: ran.add(m)) for m in leaves]
    with torch.no_grad():
        case.model(case.x[:1])
    for h in handles:
        h.remove()
    unused = sum(4 * p.numel() for m in leaves if m not in ran for p in m.parameters())
    # side heads only
    assert (unused > 0) == bool(netdsl.compile(spec(case.net), grant=list(case.net.grant) or None).outputs)
    # torchinfo also leaves out a parameter held by a module with children (ConvNeXt's
    # layer_scale); netdsl counts every parameter.
    direct = sum(4 * p.numel() for m in case.model.modules() if list(m.children())
                 for p in m._parameters.values() if p is not None)
    param_bytes = stats.total_param_bytes + unused + direct
    theirs = {"params": stats.total_params, "trainable_params": stats.trainable_params,
              "non_trainable_params": stats.total_params - stats.trainable_params,
              "input_bytes": input_bytes, "param_bytes": param_bytes,
              "activation_bytes": stats.total_output_bytes,
              "total_bytes": input_bytes + stats.total_output_bytes + param_bytes}
    assert input_bytes == 4 * case.x[0].numel()
    assert param_bytes == 4 * sum(p.numel() for p in case.model.parameters())
    assert {k: ours[k] for k in theirs} == theirs
    assert ours["trainable_params"] == sum(p.numel() for p in case.model.parameters() if p.requires_grad)
