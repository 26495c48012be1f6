"""Shape rules and argument checks (netdsl/layers/shapes.py, layers.py, Checker._ranges)
against torch: for any layer configuration, either `check` refuses it with a
diagnostic, or the built model runs forward (train mode, batch 2, and eval mode,
batch 1) and backward, and its output has the shape `check` inferred."""

import os

import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import netdsl
from netdsl.backend.lower import lower
from netdsl.layers import LAYERS, REQUIRED, Arg, _bool, _float, _pair, _pair_or_none
from netdsl.layers.base import _ints
from netdsl.layers.conv import _pair_or_same
from netdsl.layers.reduce import _dims
from netdsl.layers.resample import _scale
from netdsl.layers.reshape import _pad4, _sizes

EDGE_INTS = st.integers(-1, 9)
EDGE_FLOATS = st.one_of(st.sampled_from([-0.5, 0.0, 1e-12, 1e-5, 0.1, 0.5, 0.999, 1.0, 1.5, 2.0]),
                        st.floats(-2, 2))


def _pairs(ints):
    return st.one_of(ints, st.lists(ints, min_size=2, max_size=2))


# Mostly values a user would write, a quarter of the time any edge value.
TYPICAL = {"out_channels": st.integers(1, 6), "out_features": st.integers(1, 6),
           "kernel_size": st.integers(1, 4), "stride": st.integers(1, 3),
           "padding": st.integers(0, 2), "dilation": st.integers(1, 3), "groups": st.integers(1, 3),
           "output_size": st.integers(1, 5), "size": st.integers(1, 5),
           "p": st.floats(0, 1), "momentum": st.floats(0, 1), "eps": st.floats(1e-8, 1),
           "alpha": st.floats(0, 1), "beta": st.floats(0, 2), "k": st.floats(0.5, 2),
           "dim": st.integers(-2, 2), "start": st.integers(0, 3), "length": st.integers(1, 3),
           "start_dim": st.integers(-3, 2), "end_dim": st.integers(-3, 2)}


def value_of(arg):
    """A strategy for one argument of a layer signature, from its converter: a new
    kind in the catalogue is drawn with no change here."""
    inner = getattr(arg.convert, "inner", None)
    if inner is not None:  # none, or a value of the inner type
        return st.one_of(st.none(), value_of(Arg(arg.name, inner, arg.default)))
    if arg.convert is _bool:
        return st.booleans()
    if hasattr(arg.convert, "choices"):
        return st.sampled_from(list(arg.convert.choices) + ["bogus"])
    if arg.convert is _ints:
        return st.one_of(st.permutations([0, 1, 2]), st.lists(st.integers(-1, 3), max_size=4))
    if arg.convert is _dims:  # one dimension or several, negative ones from the end
        return st.one_of(st.integers(-3, 3), st.lists(st.integers(-3, 3), max_size=3))
    if arg.convert is _sizes:  # the sizes a dimension splits into, one of them perhaps -1
        return st.lists(st.sampled_from([-1, -1, 1, 2, 2, 3, 0]), max_size=3)
    if arg.convert is _pair_or_same:  # a padding, or TensorFlow's "same"
        return st.one_of(st.just("same"), value_of(Arg(arg.name, _pair, arg.default)))
    if arg.convert is _float:
        typical, edge = TYPICAL.get(arg.name, EDGE_FLOATS), EDGE_FLOATS
    else:
        typical, edge = TYPICAL.get(arg.name, EDGE_INTS), EDGE_INTS
        if arg.convert is _scale:
            typical, edge = _pairs(st.sampled_from([0.5, 1, 1.5, 2, 3])), _pairs(EDGE_FLOATS)
        if arg.convert is _pad4:
            typical = st.one_of(typical, st.lists(st.integers(0, 2), min_size=4, max_size=4))
        if arg.convert in (_pair, _pair_or_none):
            typical, edge = _pairs(typical), _pairs(edge)
        if arg.convert is _pair_or_none:
            typical = st.one_of(st.none(), typical)
    return st.one_of(typical, typical, typical, edge)


# What comes before the layer: its input may be a tensor another op still needs.
PREFIXES = ["", "relu", "sigmoid", "tanh", "identity", "relu(inplace = true)", "batchnorm2d",
            "conv2d({c}, 1)", "dropout(0.5)", "flatten", "silu(inplace = true)",
            "relu6(inplace = true)", "gelu", "maxpool2d(1)", "local_response_norm(2)"]


def _literal(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(map(_literal, v)) + "]"
    return repr(v)


@st.composite
def layers(draw):
    # The kinds with many arguments are drawn more often.
    kind = draw(st.sampled_from(sorted(LAYERS) + ["conv2d", "maxpool2d", "avgpool2d"] * 3))
    args = []
    for a in LAYERS[kind].args:
        if a.default is REQUIRED or draw(st.booleans()):
            args.append(f"{a.name} = {_literal(draw(value_of(a)))}")
    return f"{kind}({', '.join(args)})"


IMAGES = st.tuples(st.integers(1, 6), st.integers(1, 9), st.integers(1, 9))
SEQUENCES = st.tuples(st.integers(1, 6), st.integers(1, 9))
SHAPES = st.one_of(IMAGES, IMAGES, IMAGES, SEQUENCES, st.tuples(st.integers(1, 8)))


def spec_of(shape, prefix, layer, wrap):
    c = shape[0]
    body = "\n".join(x for x in (prefix.format(c=c), layer) if x)
    if wrap == "residual":
        body = f"residual {{\n{body}\n}}"
    elif wrap == "labelled":
        body = f"g: {{\n{body}\n}}"
    return f"network n() {{\n input {list(shape)}\n{body}\n}}"


def runs_like_check_says(spec):
    """None when check refuses ``spec``; else build it and run it, and return the model."""
    try:
        net = netdsl.compile(spec)
    except netdsl.NetdslError:
        return None
    torch.manual_seed(0)
    model = lower(net)
    shape = tuple(net.input_shape)
    model.train()
    x = torch.randn(2, *shape, requires_grad=True)
    out = model(x)
    assert tuple(out.shape) == (2, *net.out_shape), spec
    # A finite input gives a finite output (a pool window of padding alone gives -inf).
    assert torch.isfinite(out).all(), spec
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, *shape))
    assert tuple(out.shape) == (1, *net.out_shape), spec
    assert torch.isfinite(out).all(), spec
    return model


# Disagreements the property found, kept as regression examples (each passed check,
# then torch refused it).
REGRESSIONS = [
    # torch checks max-pool padding against the raw kernel, not the dilated one
    "network n() {\n input [1, 9, 9]\n maxpool2d(3, padding = 2, dilation = 2)\n}",
    # a dilated max-pool window that sees only padding outputs -inf (E0328)
    "network n() {\n input [1, 2, 2]\n maxpool2d(2, stride = 1, padding = 1, dilation = 3)\n}",
    # in-place layers overwrite a tensor the previous layer's backward needs
    "network n() {\n input [2, 4, 4]\n sigmoid\n relu(inplace = true)\n}",
    "network n() {\n input [2, 4, 4]\n conv2d(2, 1)\n relu\n silu(inplace = true)\n}",
    "network n() {\n input [2, 4, 4]\n conv2d(2, 1)\n tanh\n hardswish(inplace = true)\n}",
    "network n() {\n input [2, 4, 4]\n conv2d(2, 1)\n relu(inplace = true)\n dropout(0.5, inplace = true)\n}",
    "network n() {\n input [2, 4, 4]\n conv2d(2, 1)\n relu\n flatten\n relu(inplace = true)\n}",
    # batch statistics in eval mode: one sample of [C, 1, 1] has one value per channel
    "network n() {\n input [1, 1, 1]\n batchnorm2d(track_running_stats = false)\n}",
]


@pytest.mark.parametrize("spec", REGRESSIONS)
def test_regressions_are_refused_or_run(spec):
    runs_like_check_says(spec)


# NETDSL_EXAMPLES=N runs more examples (by hand: see the report in docs/robustness.md).
@pytest.mark.slow
@settings(max_examples=int(os.environ.get("NETDSL_EXAMPLES", 400)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(shape=SHAPES, prefix=st.one_of(st.just(""), st.sampled_from(PREFIXES)), layer=layers(),
       wrap=st.sampled_from(["", "", "", "residual", "labelled"]))
@example(shape=(1, 9, 9), prefix="", layer="maxpool2d(3, padding = 2, dilation = 2)", wrap="")
def test_check_agrees_with_torch_for_every_layer(shape, prefix, layer, wrap):
    model = runs_like_check_says(spec_of(shape, prefix, layer, wrap))
    event(f"{layer.split('(')[0]} {'accepted' if model is not None else 'refused'}")


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_the_property_reaches_every_layer_kind_accepted(kind):
    # Each kind's catalogue example passes check and runs: the property's generator
    # is not refused everywhere.
    sig = LAYERS[kind]
    assert runs_like_check_says(spec_of(sig.example_input, "", sig.use, "")) is not None, kind


def test_group_norm_with_one_value_per_group_is_refused_as_torch_refuses_it_in_training():
    # Found by the property above: check accepted it, and training mode raised.
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile("network n() { input [1]\n group_norm(num_groups = 1) }")
    assert e.value.diagnostics[0].code == "E0306"
    netdsl.compile("network n() { input [2]\n group_norm(num_groups = 1) }")  # two values: fine


def test_e0328_is_exactly_where_torch_max_pool_gives_minus_infinity():
    # Differential, exhaustive over small windows: check refuses a max pool with
    # E0328 if and only if torch's output on a finite input holds -inf.
    from netdsl.layers.shapes import ShapeError, window
    seen = set()
    for size in range(1, 7):
        for k in range(1, 4):
            for s in range(1, 4):
                for p in range(0, k // 2 + 1):
                    for d in range(1, 4):
                        for ceil in (False, True):
                            try:
                                out = window("maxpool2d", size, k, s, p, d, ceil, "height")
                                code = None
                            except ShapeError as e:
                                code = e.code
                            if code == "E0305":
                                continue
                            pool = torch.nn.MaxPool2d((1, k), (1, s), (0, p), (1, d), ceil_mode=ceil)
                            y = pool(torch.zeros(1, 1, 1, size))
                            assert (code == "E0328") == bool(torch.isinf(y).any()), (size, k, s, p, d, ceil)
                            if code is None:
                                assert y.shape[-1] == out
                            seen.add(code)
    assert seen == {None, "E0328"}
