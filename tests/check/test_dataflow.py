"""General dataflow (netdsl/check/dataflow.py, lower.py's graph, modules.GraphOp): named
results, merges, several inputs and outputs, and split. The shipped U-Net, FPN and
ShuffleNet V2 specs against hand-written PyTorch and torchvision where a table of
whole-network comparisons cannot say it (tests/equivalence/test_zoo.py holds their
outputs and gradients); the built models under FX, torch.compile and pickle."""

import inspect
import pickle
import re

import pytest
import torch
import torchvision
from hand_written import UNet
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

import netdsl
from netdsl import ir
from netdsl.analysis import analyse

# ---------------------------------------------------------------- U-Net


def test_unet_default_has_the_hand_written_unets_parameters(spec_path):
    net = netdsl.compile(spec_path("unet"))
    ref = UNet()
    assert analyse(net).params == sum(p.numel() for p in ref.parameters())
    assert net.out_shape == (2, 256, 256)


def test_unet_has_the_hand_written_unets_module_tree(spec_path):
    # Outputs, training mode and gradients against the hand-written U-Net are a row of
    # tests/equivalence/test_zoo.py; here, the names of modules without parameters too.
    model = netdsl.build(spec_path("unet"), depth=3, width=8, channels=3, num_classes=5, resolution=32,
                         device="meta")
    with torch.device("meta"):
        ref = UNet(depth=3, width=8, channels=3, num_classes=5)
    assert [n for n, _ in model.named_modules()] == [n for n, _ in ref.named_modules()]


def test_unet_bilinear_variant_builds_and_keeps_the_size(spec_path):
    model = netdsl.build(spec_path("unet"), depth=2, width=4, bilinear=True, resolution=16).eval()
    assert model(torch.randn(1, 1, 16, 16)).shape == (1, 2, 16, 16)


# ---------------------------------------------------------------- ResNet-50 + FPN


def test_resnet50_fpn_returns_torchvisions_maps_by_name(spec_path):
    # The maps' values against torchvision's are a row of tests/equivalence/test_zoo.py,
    # which pairs a dict's entries in order; here, their names and shapes.
    with torch.device("meta"):
        ref = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=nn.BatchNorm2d,
                                  trainable_layers=5).eval()
    model = netdsl.build(spec_path("resnet50_fpn"), resolution=64, device="meta").eval()
    x = torch.randn(1, 3, 64, 64, device="meta")
    with torch.no_grad():
        ours, theirs = model(x), ref(x)
    assert list(ours) == list(theirs) == ["0", "1", "2", "3", "pool"]
    assert [v.shape for v in ours.values()] == [v.shape for v in theirs.values()]
    net = netdsl.compile(spec_path("resnet50_fpn"), resolution=64)
    assert [tuple(s) for s in net.result.shapes] == [tuple(theirs[k].shape[1:]) for k in theirs]


# ---------------------------------------------------------------- ShuffleNet V2

WIDTHS = ["0_5", "1_0", "1_5", "2_0"]


@pytest.mark.parametrize("width", WIDTHS)
def test_every_shufflenet_v2_width_has_torchvisions_parameter_count(spec_path, width):
    ref = getattr(torchvision.models, f"shufflenet_v2_x{width}")()
    net = netdsl.compile(spec_path(f"shufflenet_v2_x{width}"))
    assert analyse(net).params == sum(p.numel() for p in ref.parameters())


def test_shufflenet_width_outside_the_family_is_refused(spec_path):
    with pytest.raises(netdsl.NetdslError, match="E0501"):
        netdsl.compile(spec_path("shufflenet_v2"), width=0.75)


# ---------------------------------------------------------------- several inputs and outputs

TWO_STREAM = """
network two_stream(num_classes = 10) {
    input rgb: [3, 32, 32]
    input depth: [1, 32, 32]
    from rgb
    rgb_stem: conv2d(16, 3, padding = 1) -> a
    from depth
    depth_stem: conv2d(16, 3, padding = 1) -> b
    add(a, b) -> fused
    concat(fused, a)
    head: conv2d(8, 1) -> logits
    output namedtuple(logits, fused)
}
"""


class TwoStream(nn.Module):
    def __init__(self):
        super().__init__()
        self.rgb_stem = nn.Conv2d(3, 16, 3, padding=1)
        self.depth_stem = nn.Conv2d(1, 16, 3, padding=1)
        self.head = nn.Conv2d(32, 8, 1)

    def forward(self, rgb, depth):
        a = self.rgb_stem(rgb)
        fused = a + self.depth_stem(depth)
        return self.head(torch.cat([fused, a], 1)), fused


def test_two_inputs_in_declared_order_and_a_named_tuple_out():
    import inspect

    torch.manual_seed(0)
    model, ref = netdsl.build(TWO_STREAM), TwoStream()
    model.load_state_dict(ref.state_dict(), strict=True)
    assert list(inspect.signature(model.forward).parameters) == ["rgb", "depth"]
    rgb, depth = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    out = model(rgb, depth)
    assert type(out)._fields == ("logits", "fused")
    torch.testing.assert_close(tuple(out), ref(rgb, depth))
    with pytest.raises(netdsl.backend.runtime.InputShapeError, match="expects input"):
        model(rgb, depth[0])


def test_analysis_counts_every_stream():
    a = analyse(netdsl.compile(TWO_STREAM))
    assert a.params == sum(p.numel() for p in TwoStream().parameters())
    assert a.macs == (16 * 3 * 9 + 16 * 9 + 8 * 32) * 32 * 32


def test_input_shape_overrides_by_name_and_by_position():
    by_name = netdsl.compile(TWO_STREAM, input={"rgb": (3, 16, 16), "depth": (1, 16, 16)})
    by_position = netdsl.compile(TWO_STREAM, input=((3, 16, 16), (1, 16, 16)))
    assert by_name == by_position
    assert [i.shape for i in by_name.inputs] == [(3, 16, 16), (1, 16, 16)]
    with pytest.raises(netdsl.NetdslError, match="E0325"):  # the streams no longer agree
        netdsl.compile(TWO_STREAM, input={"rgb": (3, 16, 16)})


@pytest.mark.parametrize("form, expected", [("tuple", tuple), ("dict", dict)])
def test_output_form_is_what_the_spec_states(form, expected):
    keys = '"0": a, "1": b' if form == "dict" else "a, b"
    model = netdsl.build(f"network n() {{ input [3, 8, 8]\n conv2d(4, 1) -> a\n relu -> b\n"
                         f" output {form}({keys}) }}").eval()
    out = model(torch.randn(1, 3, 8, 8))
    assert type(out) is expected and len(out) == 2
    if form == "dict":
        assert list(out) == ["0", "1"]


# ---------------------------------------------------------------- lowering

SKIPS = """
network n() {
    input [3, 16, 16]
    stem: conv2d(8, 3, padding = 1) -> x0
    down: { maxpool2d(2)
        conv2d(16, 3, padding = 1)
        relu }
    up: conv_transpose2d(8, 2, stride = 2) -> u
    concat(x0, u)
    split { {}
        part: { conv2d(8, 1) } }
    channel_shuffle(2)
    out: conv2d(4, 1)
}
"""


def test_fx_traces_a_dataflow_network_with_module_names_as_nodes():
    model = netdsl.build(SKIPS).eval()
    graph = torch.fx.symbolic_trace(model)
    names = [n.name for n in graph.graph.nodes]
    assert {"stem", "down_0", "down_1", "up", "cat", "part_0", "out"} <= set(names)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(graph(x), model(x))


@pytest.mark.slow
def test_torch_compile_sees_no_graph_break():
    import torch._dynamo

    torch._dynamo.reset()
    model = netdsl.build(SKIPS).eval()
    explained = torch._dynamo.explain(model)(torch.randn(2, 3, 16, 16))
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    explained = torch._dynamo.explain(netdsl.build(TWO_STREAM))(torch.randn(1, 3, 32, 32),
                                                                 torch.randn(1, 1, 32, 32))
    assert explained.graph_break_count == 0


@pytest.mark.parametrize("spec, args", [(SKIPS, [(3, 16, 16)]), (TWO_STREAM, [(3, 32, 32), (1, 32, 32)])],
                         ids=["skips", "two_stream"])
def test_pickle_keeps_the_plan_inputs_and_outputs(spec, args):
    model = netdsl.build(spec).eval()
    xs = [torch.randn(1, *s) for s in args]
    again = pickle.loads(pickle.dumps(model))
    assert type(again).__name__ == type(model).__name__
    torch.testing.assert_close(tuple(again(*xs)) if isinstance(model(*xs), tuple) else again(*xs),
                               tuple(model(*xs)) if isinstance(model(*xs), tuple) else model(*xs))


def test_the_forward_names_results_as_the_spec_does():
    # Named results are local variables of those names, as a hand-written forward has them,
    # and each statement ends with its spec line.
    import inspect

    model = netdsl.build(SKIPS)
    source = inspect.getsource(type(model).forward)
    assert "x0 = self.stem(x)" in source
    assert re.search(r"= torch\.cat\(\[x0, \w+\], 1\)  # <spec>:\d+", source)


def test_checked_ir_round_trips_through_json():
    net = netdsl.compile(SKIPS)
    assert netdsl.ir.Network.model_validate_json(net.model_dump_json()) == net
    net = netdsl.compile(TWO_STREAM)
    assert netdsl.ir.Network.model_validate_json(net.model_dump_json()) == net


def test_in_place_layer_after_a_named_result_is_refused():
    # relu(inplace) would overwrite `a`, which the add reads again.
    with pytest.raises(netdsl.NetdslError, match="E0311"):
        netdsl.compile("network n() { input [3, 8, 8]\n conv2d(4, 1) -> a\n relu(inplace = true) -> b\n"
                       " add(a, b) }")


def test_language_dataflow_examples_compile_and_build():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text()
    section = text.split("## General dataflow: named results")[1].split("## Names and state_dict keys")[0]
    specs = [b for b in section.split("```netdsl\n")[1:]]
    specs = [b.split("```")[0] for b in specs]
    assert len(specs) == 8
    for spec in specs:
        net = netdsl.compile(spec)
        model = netdsl.build(spec).eval()
        xs = [torch.randn(1, *i.shape) for i in net.inputs] or [torch.randn(1, *net.input_shape)]
        model(*xs)


def test_a_from_whose_result_nothing_reads_is_refused():
    # Found by the fuzzer: `from in0` then `from in1` read in0 for nothing, and the built
    # model gave in0 no gradient although check had accepted it.
    with pytest.raises(netdsl.NetdslError, match="E0128") as e:
        netdsl.compile("network n() { input a: [1, 4, 4]\n input b: [1, 4, 4]\n from a\n from b\n"
                       " output dict(a: a) }")
    assert e.value.diagnostics[0].span.line == 3


# ---------------------------------------------------------------- elementwise arithmetic

def _torch_broadcast(a, b):
    """torch's own answer: the shape of a + b on [2, *a] and [2, *b], or None."""
    try:
        return tuple(torch.broadcast_shapes((2, *a), (2, *b))[1:])
    except RuntimeError:
        return None


# An input is [C, H, W] or [F]: each dimension 1, 2 or 3.
_DIMS = st.sampled_from([1, 3]).flatmap(lambda n: st.lists(st.sampled_from([1, 2, 3]), min_size=n,
                                                             max_size=n))


@settings(max_examples=60, deadline=None)
@given(_DIMS, _DIMS, st.sampled_from(["add", "sub", "mul", "div"]))
def test_elementwise_merges_broadcast_as_torch_does_at_equal_rank(a, b, op):
    # Inputs of any shape: the checker's broadcast against torch's, and the built model's
    # values against the operator itself. A rank differs only where torch would align the
    # shorter shape with the last dimensions, which netdsl refuses (E0325).
    spec = f"network n() {{\n input a: {list(a)}\n input b: {list(b)}\n {op}(a, b)\n}}"
    expected = _torch_broadcast(a, b) if len(a) == len(b) else None
    if expected is None:
        with pytest.raises(netdsl.NetdslError) as info:
            netdsl.compile(spec)
        assert [d.code for d in info.value.diagnostics] == ["E0325"]
        return
    net = netdsl.compile(spec)
    assert net.out_shape == expected
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, *a, generator=g), torch.rand(2, *b, generator=g) + 0.5
    want = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}[op](x, y)
    got = netdsl.build(spec)(x, y)
    assert torch.equal(got, want)


def test_a_channel_attention_scales_each_channel_as_hand_written_torch():
    spec = """
network attention() {
    input [4, 6, 6]
    features: conv2d(8, 3, padding = 1) -> x
    pool: adaptive_avgpool2d(1)
    fc: conv2d(8, 1)
    sigmoid -> weights
    mul(x, weights) -> scaled
    sub(x, scaled) -> rest
    div(rest, weights) -> ratio
    add(ratio, x, scaled)
}"""
    model = netdsl.build(spec)
    x = torch.randn(2, 4, 6, 6)
    f = model.features(x)
    w = torch.sigmoid(model.fc(f.mean((2, 3), keepdim=True)))
    want = (f - f * w) / w + f + f * w
    torch.testing.assert_close(model(x), want)
    assert re.search(r"scaled = \w+ \* weights  # <spec>:8", inspect.getsource(type(model).forward))


def test_sub_and_div_take_two_results_and_say_how_to_chain():
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile("network n() {\n input [2, 4, 4]\n conv2d(2, 1) -> a\n conv2d(2, 1) -> b\n"
                       " conv2d(2, 1) -> c\n sub(a, b, c)\n}")
    (d,) = info.value.diagnostics
    assert (d.code, d.span.line, d.span.column) == ("E0134", 6, 12)
    assert "sub(a, b) -> ab" in d.help


def test_a_shorter_shape_is_refused_where_torch_would_align_it_with_the_width():
    # torch broadcasts [2, 4] against [2, 4, 4, 4] by the last dimensions: a silent
    # wrong model (the channel weights applied across the width). netdsl refuses it.
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile("network n() {\n input [4, 4, 4] \n relu -> x\n flatten\n linear(4) -> w\n"
                       " mul(x, w)\n}")
    (d,) = info.value.diagnostics
    assert d.code == "E0325" and "[4]" in d.label and "[4, 4, 4]" in d.label


# ---------------------------------------------------------------- resize and crop

def _geometry(op: str, a: tuple, b: tuple, options: str = "") -> str:
    """A network of two inputs `a` and `b` whose output is `op(a, b, options)`."""
    opts = f", {options}" if options else ""
    return (f"network n() {{\n input a: [{', '.join(map(str, a))}]\n input b: [{', '.join(map(str, b))}]\n"
            f" {op}(a, b{opts}) -> out\n output tuple(out) }}")


@settings(max_examples=60, deadline=None)
@given(c=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12), h2=st.integers(1, 12),
       w2=st.integers(1, 12), mode=st.sampled_from(["", 'mode = "nearest"', 'mode = "bilinear"',
                                                   'mode = "bilinear", align_corners = true',
                                                   'mode = "bilinear", align_corners = false']))
def test_resize_is_interpolate_to_the_second_results_size_at_any_resolution(c, h, w, h2, w2, mode):
    spec = _geometry("resize", (c, h, w), (2, h2, w2), mode)
    net = netdsl.compile(spec)
    assert tuple(net.result.shapes[0]) == (c, h2, w2)
    model = netdsl.build(spec)
    kwargs = {"mode": "nearest"}
    if "bilinear" in mode:
        kwargs = {"mode": "bilinear", "align_corners": "true" in mode}
    # At the checked sizes, and at others: the size is read when the model runs.
    for (hh, ww), (hh2, ww2) in (((h, w), (h2, w2)), ((h + 3, w + 1), (h2 + 2, w2 + 5))):
        a, b = torch.randn(2, c, hh, ww), torch.randn(2, 2, hh2, ww2)
        (got,) = model(a, b)
        want = torch.nn.functional.interpolate(a, size=(hh2, ww2), **kwargs)
        assert torch.equal(got, want)


@settings(max_examples=60, deadline=None)
@given(c=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12), h2=st.integers(1, 12),
       w2=st.integers(1, 12), offset=st.none() | st.tuples(st.integers(0, 12), st.integers(0, 12)))
def test_crop_is_the_window_of_the_second_results_size_or_its_error(c, h, w, h2, w2, offset):
    spec = _geometry("crop", (c, h, w), (2, h2, w2), "" if offset is None else f"offset = {list(offset)}")
    dy, dx = offset if offset is not None else ((h - h2) // 2, (w - w2) // 2)
    fits = h2 + dy <= h and w2 + dx <= w and dy >= 0 and dx >= 0
    if not fits:
        with pytest.raises(netdsl.NetdslError, match="E0330"):
            netdsl.compile(spec)
        return
    net = netdsl.compile(spec)
    assert tuple(net.result.shapes[0]) == (c, h2, w2)
    a, b = torch.randn(2, c, h, w), torch.randn(2, 2, h2, w2)
    (got,) = netdsl.build(spec)(a, b)
    assert torch.equal(got, a[:, :, dy:dy + h2, dx:dx + w2])


def test_a_centred_crop_follows_the_sizes_the_model_is_run_at():
    # Checked at 12 → 8 (corner 2), run at 20 → 9 (corner 5): the corner moves with the sizes.
    model = netdsl.build(_geometry("crop", (1, 12, 12), (1, 8, 8)))
    a = torch.arange(400.0).reshape(1, 1, 20, 20)
    (got,) = model(a, torch.zeros(1, 1, 9, 9))
    assert torch.equal(got, a[..., 5:14, 5:14])


@pytest.mark.parametrize("spec, code", [
    (_geometry("resize", (2, 4, 4), (2, 8, 8), "align_corners = true"), "E0222"),
    (_geometry("resize", (2, 4, 4), (2, 8, 8), "offset = [0, 0]"), "E0202"),
    (_geometry("crop", (2, 8, 8), (2, 4, 4), 'mode = "bilinear"'), "E0202"),
    (_geometry("crop", (2, 8, 8), (2, 4, 4), "offset = [0, -1]"), "E0204"),
    (_geometry("crop", (2, 8, 8), (2, 4, 4), 'offset = "centre"'), "E0206"),
    (_geometry("crop", (2, 8, 8), (2, 4, 4), "offset = [5, 0]"), "E0330"),
    (_geometry("crop", (2, 4, 4), (2, 8, 8)), "E0330"),
    (_geometry("resize", (2, 4, 4), (8,)), "E0329"),
    (_geometry("crop", (8,), (2, 4, 4)), "E0329"),
    ("network n() { input a: [2, 4, 4]\n input b: [2, 2, 2]\n resize(a, b, a) -> c\n output tuple(c) }",
     "E0134"),
    ("network n() { input a: [2, 4, 4]\n crop(a) -> c\n output tuple(c) }", "E0134"),
])
def test_each_misuse_of_resize_and_crop_has_its_code(spec, code):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec)
    assert e.value.diagnostics[0].code == code


def test_resize_counts_as_fvcore_counts_upsample():
    from netdsl.analysis import analyse
    from netdsl.cli.build import fvcore_total

    spec = ("network n() { input [3, 16, 16]\n conv2d(4, 1) -> big\n"
            " conv2d(4, 3, stride = 2, padding = 1) -> small\n"
            ' resize(small, big, mode = "bilinear") -> up\n resize(small, big) -> up2\n'
            " crop(big, small) -> c\n output tuple(up, up2, c) }")
    a = analyse(netdsl.compile(spec))
    convs = 4 * 3 * 16 * 16 + 4 * 4 * 9 * 8 * 8
    assert a.macs == convs + 4 * 16 * 16 * 4 + 4 * 16 * 16  # bilinear 4 per element, nearest 1
    assert a.macs == fvcore_total(netdsl.build(spec), [(3, 16, 16)], torch.device("cpu"))


@pytest.mark.parametrize("op, operator", [("add", torch.add), ("sub", torch.sub), ("mul", torch.mul),
                                          ("div", torch.div)])
@pytest.mark.parametrize("by", [0.2, -3, 2.5])
def test_a_constant_operand_is_the_torch_operation_with_that_number(op, operator, by):
    spec = f"network n(alpha = {by}) {{ input [3, 4, 4]\n c: conv2d(3, 1) -> a\n {op}(a, by = alpha) }}"
    model = netdsl.build(spec).eval()
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(model(x), operator(model.c(x), by))
    # With two results too, the constant last: a + b + c, a * b * c.
    if op in ("add", "mul"):
        two = netdsl.build(f"network n() {{ input [3, 4, 4]\n c: conv2d(3, 1) -> a\n relu -> b\n"
                           f" {op}(a, b, by = {by}) }}").eval()
        with torch.no_grad():
            a = two.c(x)
            assert torch.equal(two(x), operator(operator(a, torch.relu(a)), by))


@pytest.mark.parametrize("merge, code", [("div(a, by = 0)", "E0211"), ("mul(a, by = 1e39)", "E0204"),
                                         ("sub(a, a, by = 1)", "E0134"), ("mul(a)", "E0134"),
                                         ('add(a, by = "x")', "E0206"), ("concat(a, a, by = 1)", "E0202"),
                                         ("resize(a, a, by = 1)", "E0202")])
def test_each_misuse_of_a_constant_operand_has_its_code(merge, code):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(f"network n() {{ input [3, 4, 4]\n conv2d(3, 1) -> a\n {merge} }}")
    assert e.value.diagnostics[0].code == code


def test_apply_and_reuse_results_can_be_named():
    # `apply relu -> y` and `reuse r -> y` were syntax errors (E0001): every statement that
    # makes a result may name it.
    spec = ("network n() { input [3, 4, 4]\n c: conv2d(3, 1)\n apply relu -> y\n r: conv2d(3, 1)\n"
            " reuse r -> z\n add(y, z) }")
    model = netdsl.build(spec).eval()
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        y = torch.relu(model.c(x))
        assert torch.equal(model(x), y + model.r(model.r(y)))


def test_a_shortcut_label_may_be_a_template():
    # `shortcut "c1x1_w_s{stride}"` was E0001: the label is a template, as any label is.
    spec = ('block b(stride) {\n residual { conv2d(8, 3, stride = stride, padding = 1) }'
            ' shortcut "c1x1_w_s{stride}" { conv2d(8, 1, stride = stride) }\n}\n'
            "network n() { input [4, 8, 8]\n b(2)\n b(1) }")
    keys = list(netdsl.build(spec).state_dict())
    assert "0.c1x1_w_s2.0.weight" in keys and "1.c1x1_w_s1.0.weight" in keys
    with pytest.raises(netdsl.NetdslError, match="E0111"):
        netdsl.compile(spec.replace('"c1x1_w_s{stride}"', '"w.{stride}."'))


def test_a_loops_named_results_are_unused_only_if_no_iteration_is_read():
    loop = """network n() {
    input [3, 8, 8]
    for i in range(3) {
        conv2d(3, 3, padding = 1) -> "x{i}"
    }
    READ
}"""
    # The last iteration's name is the loop's end: reading the others is no mistake.
    assert netdsl.compile(loop.replace("READ", "add(x0, x1)")).out_shape == (3, 8, 8)
    # No iteration's name read at all: the template names results for nothing.
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(loop.replace("READ", "relu"))
    assert [(d.code, d.span.line) for d in e.value.diagnostics] == [("E0128", 4)]
    # A branch only some iterations take, read once.
    branch = loop.replace('conv2d(3, 3, padding = 1) -> "x{i}"',
                          'if i > 0 { conv2d(3, 3, padding = 1) -> "x{i}" }').replace("READ", "add(x1, x2)")
    assert netdsl.compile(branch).out_shape == (3, 8, 8)


# ---------------------------------------------------------------- blocks of several tensors

_JOIN = """
block join(c) {
    input x
    input skip
    from x
    conv2d(c + in_channels, 1) -> y
    resize(skip, y) -> q
    concat(y, q) -> both
    from both
    relu -> r
    output tuple(r, y)
}
"""


def test_a_block_of_several_tensors_in_the_ir():
    net = netdsl.compile(_JOIN + """network n() {
        input [4, 8, 8]
        conv2d(2, 1, stride = 2) -> small
        from small
        conv2d(6, 1) -> big
        from big, small
        j: join(3) -> r, y
        concat(r, y)
    }""")
    j = next(n for n in net.body if isinstance(n, ir.Scope))
    assert (j.inputs, j.outputs, j.sources, j.targets) == (("x", "skip"), ("r", "y"), ("big", "small"), ("r", "y"))
    # in_channels is the first input's; every shape is the one given where it is used.
    assert j.in_shapes == ((6, 4, 4), (2, 4, 4)) and j.out_shapes == ((11, 4, 4), (9, 4, 4))
    assert (j.in_shape, j.out_shape) == ((6, 4, 4), (11, 4, 4))
    assert net.out_shape == (20, 4, 4)
    assert ir.Network.model_validate_json(net.model_dump_json()) == net


def test_each_instance_of_a_block_of_several_tensors_sees_its_own_inputs():
    # Not a replay of the first (the memo's, keyed by the first input): the second input
    # differs, and so does what the block gives.
    net = netdsl.compile(_JOIN + """network n() {
        input [4, 8, 8]
        conv2d(2, 1) -> a
        conv2d(5, 1) -> b
        conv2d(7, 1) -> c
        from a, b
        j1: join(3) -> r1, y1
        from a, c
        j2: join(3) -> r2, y2
        concat(r1, y1, r2, y2)
    }""")
    j1, j2 = [n for n in net.body if isinstance(n, ir.Scope)]
    assert j1.out_shapes == ((10, 8, 8), (5, 8, 8)) and j2.out_shapes == ((12, 8, 8), (5, 8, 8))
    assert net.out_shape == (32, 8, 8)


def test_a_block_of_one_named_input_reads_the_current_result():
    net = netdsl.compile("block b() { input x\n from x\n c: conv2d(2, 1) }\n"
                         "network n() { input [4, 8, 8]\n relu\n b() }")
    (_, b) = net.body
    assert b.inputs == ("x",) and b.sources == () and b.out_shape == (2, 8, 8)


@pytest.mark.parametrize("body, code", [
    ("conv2d(4, 1) -> a\n from a, a\n relu", "E0136"),  # several read by a layer
    ("conv2d(4, 1) -> a\n from a, a\n j: join(2)\n", "E0136"),  # several results left unnamed
    ("conv2d(4, 1) -> a\n from a, a, a\n j: join(2) -> r, y\n concat(r, y)", "E0135"),
    ("j: join(2) -> r, y\n concat(r, y)", "E0135"),  # the current result alone
    ("conv2d(4, 1) -> a\n from a, a\n j: join(2) -> r, y, z\n concat(r, y, z)", "E0137"),
    ("conv2d(4, 1) -> a\n from a, a\n j: join(2) -> r\n from r", "E0136"),
    ("conv2d(4, 1) -> a, b\n concat(a, b)", "E0137"),
    ("conv2d(4, 1) -> a\n from a, a\n j: join(2) -> r, y\n relu -> z\n concat(r, y, z)", "E0132"),
])
def test_misuses_of_several_tensors(body, code):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(_JOIN + "network n() { input [4, 8, 8]\n " + body + "\n}")
    assert [d.code for d in e.value.diagnostics][:1] == [code], str(e.value)


# ---------------------------------------------------------------- chunk


@pytest.mark.parametrize("dim, parts", [(0, 2), (0, 4), (1, 2), (-1, 3), (2, 3)])
def test_chunk_names_the_parts_torch_chunk_gives(dim, parts):
    names = [f"p{k}" for k in range(parts)]
    spec = (f"network n() {{ input x: [12, 6, 6]\n chunk(x, dim = {dim}) -> {', '.join(names)}\n"
            f" output tuple({', '.join(reversed(names))}) }}")
    net = netdsl.compile(spec)
    (node,) = [n for n in net.body if isinstance(n, ir.Chunk)]
    want_shape = list((12, 6, 6))
    want_shape[dim] //= parts
    assert node.out_shape == tuple(want_shape) and node.targets == tuple(names)
    assert net.result is not None and net.result.shapes == (tuple(want_shape),) * parts
    model = netdsl.build(spec)
    x = torch.randn(2, 12, 6, 6)
    want = x.chunk(parts, dim + 1 if dim >= 0 else dim)[::-1]
    got = model(x)
    assert len(got) == parts and all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    # views of the input: no tensor of their own, no module, no MACs
    a = analyse(net)
    assert (a.params, a.macs) == (0, 0) and not list(model.children())


def test_a_later_part_reads_an_earlier_parts_result():
    spec = """network n() {
        input x: [8, 4, 4]
        chunk(x) -> x0, x1
        from x0
        c0: conv2d(4, 3, padding = 1) -> y0
        add(y0, x1)
        c1: conv2d(4, 3, padding = 1) -> y1
        concat(y0, y1)
    }"""
    model = netdsl.build(spec)
    x = torch.randn(2, 8, 4, 4)
    x0, x1 = x.chunk(2, 1)
    y0 = model.c0(x0)
    torch.testing.assert_close(model(x), torch.cat([y0, model.c1(y0 + x1)], 1), rtol=0, atol=0)
    assert "x0, x1 = x.chunk(2, 1)" in inspect.getsource(type(model).forward)


@pytest.mark.parametrize("line, code", [
    ("chunk(x) -> a", "E0137"),
    ("chunk(x)", "E0137"),
    ("chunk(x, x) -> a, b", "E0134"),
    ("chunk(x) -> a, b, c", "E0332"),
    ("chunk(x, dim = 3) -> a, b", "E0219"),
    ('chunk(x, dim = "c") -> a, b', "E0206"),
    ("chunk(x, parts = 2) -> a, b", "E0202"),
    ("chunk(x) -> a, b, a, b", "E0127"),
])
def test_each_misuse_of_chunk_has_its_code_and_no_other(line, code):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(f"network n() {{ input x: [8, 4, 4]\n {line}\n concat(a, b) }}")
    assert [d.code for d in e.value.diagnostics] == [code]
