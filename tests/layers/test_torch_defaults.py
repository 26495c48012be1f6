"""The catalogue against torch itself, not against its own description of torch.

Every default of a layer's argument is the default of the torch constructor's
argument of that name (or differs on purpose, as listed with the reason), and
every lower bound the catalogue puts on an argument (``min``, ``unit``) is one
torch enforces too: a value just past it is refused by torch's constructor or
forward, and the bound itself is accepted by both."""

import inspect
import math

import pytest
import torch

import netdsl
from netdsl.layers import LAYERS, REQUIRED
from netdsl.layers.base import _torch_class

TORCH_KINDS = sorted(k for k, v in LAYERS.items() if v.torch_class.startswith("torch.nn.")
                     and v.torch_class != "torch.nn.Parameter")

# Arguments netdsl names that torch's constructor does not take: what each stands for.
NOT_TORCH = {
    ("conv2d", "out_channels"): "required",
    ("conv1d", "out_channels"): "required",
    ("std_conv2d", "out_channels"): "required",
    ("unflatten", "sizes"): "torch's unflattened_size",
    ("layer_norm", "dims"): "how many trailing dimensions normalized_shape covers (inferred from the input)",
    ("prelu", "per_channel"): "num_parameters, 1 or the input's channels",
    ("prelu", "slope"): "torch's `init`",
    ("upsample", "size"): "required by one of size or scale_factor",
}

# Defaults that differ from torch's on purpose, and why.
DIFFERS = {
    ("softmax", "dim"): "torch's dim=None picks a dimension by rank and warns; netdsl's 0 is the "
                        "channels (torch's dim 1 of a batch)",
    ("flatten", "start_dim"): "netdsl counts the dimensions of a sample: its 0 is torch's 1, the same "
                              "dimension (the first after the batch)",
}


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_every_default_is_torchs(kind):
    k = LAYERS[kind]
    sig = inspect.signature(_torch_class(k.torch_class))
    for arg in k.args:
        if arg.default is REQUIRED or (kind, arg.name) in DIFFERS:
            continue
        if arg.name not in sig.parameters:
            assert (kind, arg.name) in NOT_TORCH, f"{kind}: `{arg.name}` is no argument of {k.torch_class}"
            continue
        theirs = sig.parameters[arg.name].default
        assert theirs is not inspect.Parameter.empty, f"{kind}.{arg.name}: torch requires it"
        assert type(arg.default) is type(theirs) or isinstance(theirs, float) and isinstance(arg.default, int) \
            or theirs is None or arg.default is None, (kind, arg.name, arg.default, theirs)
        assert arg.default == theirs, f"{kind}.{arg.name}: netdsl's default {arg.default!r}, torch's {theirs!r}"


def test_the_listed_exceptions_are_real():
    # An entry that no longer applies would hide the next mismatch.
    for kind, name in {**NOT_TORCH, **DIFFERS}:
        assert LAYERS[kind].arg(name) is not None, (kind, name)
    for kind, name in DIFFERS:
        sig = inspect.signature(_torch_class(LAYERS[kind].torch_class))
        assert LAYERS[kind].arg(name).default != sig.parameters[name].default


# -- the bounds: what netdsl refuses, torch refuses; what it accepts at the bound, torch runs

def _bounded():
    for kind in sorted(LAYERS):
        for arg in LAYERS[kind].args:
            if arg.min is not None or arg.unit:
                yield kind, arg.name


# Bounds netdsl keeps that torch does not enforce, and why netdsl keeps them.
STRICTER = {
    ("local_response_norm", "size"): "torch takes size 0 and divides by it (NaN outputs)",
    ("zero_pad2d", "padding"): "torch takes a negative padding and crops; a spec says crop explicitly",
    ("upsample", "size"): "torch takes size 0 and makes an empty tensor",
    ("pixel_shuffle", "upscale_factor"): "torch's upscale factor 0 fails only at forward with a division by zero",
    ("channel_shuffle", "groups"): "torch takes groups 0 and fails only at forward with a division by zero",
    ("stochastic_depth", "p"): "netdsl's own module; torchvision's StochasticDepth refuses p outside [0, 1]",
    ("adaptive_avgpool2d", "output_size"): "torch takes 0 and makes an empty map that breaks what follows",
    ("adaptive_maxpool2d", "output_size"): "as adaptive_avgpool2d",
    ("linear", "out_features"): "torch takes 0 and makes an empty output",
    ("batchnorm2d", "momentum"): "torch does not check it; outside [0, 1] the running statistics diverge",
    ("instance_norm2d", "momentum"): "as batchnorm2d",
    ("batchnorm1d", "momentum"): "as batchnorm2d",
    ("narrow", "start"): "torch counts a negative start from the end; a spec writes the entry it means",
    ("narrow", "length"): "torch takes length 0 and makes an empty tensor",
}


def _example_args(kind: str) -> dict[str, str]:
    """The arguments of the kind's example (``Kind.use``), by name, as spec text."""
    k = LAYERS[kind]
    use = k.use
    inner = use[use.index("(") + 1:-1] if "(" in use else ""
    depth, part, parts = 0, "", []
    for c in inner:  # split at top-level commas (a list argument has its own)
        depth += (c in "([") - (c in ")]")
        if c == "," and depth == 0:
            parts.append(part.strip())
            part = ""
        else:
            part += c
    if part.strip():
        parts.append(part.strip())
    out = {}
    for i, p in enumerate(parts):
        name, eq, value = p.partition("=")
        if eq and name.strip().isidentifier():
            out[name.strip()] = value.strip()
        else:
            out[k.args[i].name] = p
    return out


def _spec(kind: str, arg: str, value) -> str:
    k = LAYERS[kind]
    args = {**_example_args(kind), arg: str(value)}
    if (kind, arg) == ("upsample", "size"):
        del args["scale_factor"]  # one of the two, never both (E0221)
    call = f"{kind}({', '.join(f'{n} = {v}' for n, v in args.items())})"
    shape = ", ".join(map(str, k.example_input))
    return f"network n() {{ input [{shape}]\n {call} }}"


@pytest.mark.parametrize("kind, arg", list(_bounded()))
def test_a_bound_netdsl_keeps_is_one_torch_keeps(kind, arg):
    a = LAYERS[kind].arg(arg)
    low = 0.0 if a.unit else a.min
    past = low - (0.25 if a.unit else 1)
    # At the bound: netdsl accepts, and the built module runs.
    try:
        model = netdsl.build(_spec(kind, arg, low))
    except netdsl.NetdslError:
        pytest.fail(f"{kind}({arg} = {low}) is refused at its own bound")
    x = torch.randn(2, *LAYERS[kind].example_input)
    model(x)
    # Past it: netdsl refuses, at the argument.
    with pytest.raises(netdsl.NetdslError):
        netdsl.compile(_spec(kind, arg, past))
    # And torch, given the same value, refuses it too (at construction or at the first call),
    # unless netdsl is stricter for the reason listed.
    if (kind, arg) in STRICTER or (kind, arg) in NOT_TORCH:
        return
    net = netdsl.compile(_spec(kind, arg, low))
    node = net.body[0]
    desc = LAYERS[kind].torch(node)
    kwargs = dict(desc.kwargs)
    value = kwargs[arg]
    kwargs[arg] = type(value)(past if not isinstance(value, tuple) else [int(past)] * len(value)) \
        if not isinstance(value, tuple) else tuple([int(past)] * len(value))
    with pytest.raises(Exception):  # noqa: B017 - torch raises RuntimeError or ValueError
        m = _torch_class(desc.cls)(**kwargs)
        y = m(x)
        assert math.isfinite(float(y.float().sum()))
