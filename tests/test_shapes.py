"""Shape rules and argument checks (netdsl/shapes.py, layers.py, Checker._ranges)
against torch: for any layer configuration, either `check` refuses it with a
diagnostic, or the built model runs forward (train mode, batch 2, and eval mode,
batch 1) and backward, and its output has the shape `check` inferred."""

import os

import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import netdsl
from netdsl.layers import LAYERS, REQUIRED, _bool, _float, _pair, _pair_or_none
from netdsl.lower import lower

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
           "alpha": st.floats(0, 1), "beta": st.floats(0, 2), "k": st.floats(0.5, 2)}


def value_of(arg):
    """A strategy for one argument of a layer signature."""
    if arg.convert is _bool:
        return st.booleans()
    if arg.name == "mode":
        return st.sampled_from(["row", "batch"])
    if arg.convert is _float:
        typical, edge = TYPICAL.get(arg.name, EDGE_FLOATS), EDGE_FLOATS
    else:
        typical, edge = TYPICAL.get(arg.name, EDGE_INTS), EDGE_INTS
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
SHAPES = st.one_of(IMAGES, IMAGES, IMAGES, st.tuples(st.integers(1, 8)))


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
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, *shape))
    assert tuple(out.shape) == (1, *net.out_shape), spec
    return model


# Disagreements the property found, kept as regression examples (each passed check,
# then torch refused it).
REGRESSIONS = [
    # torch checks max-pool padding against the raw kernel, not the dilated one
    "network n() {\n input [1, 9, 9]\n maxpool2d(3, padding = 2, dilation = 2)\n}",
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
@settings(max_examples=int(os.environ.get("NETDSL_EXAMPLES", 400)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(shape=SHAPES, prefix=st.one_of(st.just(""), st.sampled_from(PREFIXES)), layer=layers(),
       wrap=st.sampled_from(["", "", "", "residual", "labelled"]))
@example(shape=(1, 9, 9), prefix="", layer="maxpool2d(3, padding = 2, dilation = 2)", wrap="")
def test_check_agrees_with_torch_for_every_layer(shape, prefix, layer, wrap):
    model = runs_like_check_says(spec_of(shape, prefix, layer, wrap))
    event(f"{layer.split('(')[0]} {'accepted' if model is not None else 'refused'}")


def test_the_property_reaches_every_layer_kind_accepted():
    # Each kind, with typical arguments, passes check and runs: the property's
    # generator is not refused everywhere.
    typical = {"conv2d": "conv2d(4, 3, padding = 1)", "linear": "linear(3)",
               "maxpool2d": "maxpool2d(2)", "avgpool2d": "avgpool2d(2)",
               "adaptive_avgpool2d": "adaptive_avgpool2d(2)",
               "local_response_norm": "local_response_norm(2)",
               "stochastic_depth": "stochastic_depth(0.2)", "conv_transpose2d": "conv_transpose2d(4, 3)",
               "upsample": "upsample(scale_factor = 2)", "channel_shuffle": "channel_shuffle(2)"}
    for kind in LAYERS:
        layer = typical.get(kind, kind)
        shape = (4,) if kind == "linear" else (2, 6, 6)
        assert runs_like_check_says(spec_of(shape, "", layer, "")) is not None, kind
