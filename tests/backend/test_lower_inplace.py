"""A residual adds its shortcut in place only into a body output that autograd
did not save: differentially, for every layer kind that can end a body, the
gradients of the built model equal those of the same model with every add out
of place."""

import copy
import re

import pytest
import torch

import netdsl
from netdsl.backend.runtime import spec_class
from netdsl.layers import LAYERS

IMAGE = ("[4, 6, 6]", "conv2d(4, 3, padding = 1)")   # input, a fresh layer before the last one
FLAT = ("[8]", "linear(8)")
THIN = "[4, 1, 6]"
SEQUENCE = ("[4, 6]", "conv1d(4, 1)")

# Every kind of netdsl.layers.LAYERS as the last layer of a residual body: (input, layer).
ENDINGS = {
    "conv2d": [(IMAGE, "conv2d(4, 1)")],
    "linear": [(FLAT, "linear(8)"), (FLAT, "linear(8, bias = false)")],
    "batchnorm2d": [(IMAGE, "batchnorm2d"), (IMAGE, "batchnorm2d(track_running_stats = false)"),
                    (IMAGE, "batchnorm2d(affine = false)")],
    "batchnorm1d": [(FLAT, "batchnorm1d"), (FLAT, "batchnorm1d(affine = false)")],
    "relu": [(IMAGE, "relu"), (IMAGE, "relu(inplace = true)")],
    "relu6": [(IMAGE, "relu6"), (IMAGE, "relu6(inplace = true)")],
    "silu": [(IMAGE, "silu"), (IMAGE, "silu(inplace = true)")],
    "hardswish": [(IMAGE, "hardswish"), (IMAGE, "hardswish(inplace = true)")],
    "sigmoid": [(IMAGE, "sigmoid")],
    "tanh": [(IMAGE, "tanh")],
    "gelu": [(IMAGE, "gelu"), (IMAGE, 'gelu(approximate = "tanh")')],
    "maxpool2d": [(IMAGE, "maxpool2d(3, stride = 1, padding = 1)")],
    "avgpool2d": [(IMAGE, "avgpool2d(3, stride = 1, padding = 1)"),
                  (IMAGE, "avgpool2d(3, stride = 1, padding = 1, count_include_pad = false)")],
    "adaptive_avgpool2d": [(IMAGE, "adaptive_avgpool2d(6)"),
                           (("[4, 1, 1]", "conv2d(4, 1)"), "adaptive_avgpool2d(1)")],
    "dropout": [(IMAGE, "dropout(0.3)"), (IMAGE, "dropout(0.3, inplace = true)")],
    "flatten": [(FLAT, "flatten")],
    "identity": [(IMAGE, "identity")],
    "local_response_norm": [(IMAGE, "local_response_norm(2)")],
    "conv_transpose2d": [(IMAGE, "conv_transpose2d(4, 3, padding = 1)")],
    "upsample": [(IMAGE, "upsample(size = 6)"), (IMAGE, 'upsample(scale_factor = 1, mode = "bilinear")'),
                 (IMAGE, "upsample(scale_factor = 1)"), (IMAGE, 'upsample(size = 6, mode = "bilinear")')],
    "channel_shuffle": [(IMAGE, "channel_shuffle(2)"), (IMAGE, "channel_shuffle(1)")],
    "stochastic_depth": [(IMAGE, 'stochastic_depth(0.5)'), (IMAGE, 'stochastic_depth(0.5, "batch")')],
    "layer_norm": [(IMAGE, "layer_norm"), (IMAGE, "layer_norm(dims = 3, elementwise_affine = false)")],
    "layer_norm2d": [(IMAGE, "layer_norm2d")],
    "group_norm": [(IMAGE, "group_norm(2)")],
    "instance_norm2d": [(IMAGE, "instance_norm2d"), (IMAGE, "instance_norm2d(affine = true)")],
    "hardsigmoid": [(IMAGE, "hardsigmoid"), (IMAGE, "hardsigmoid(inplace = true)")],
    "mish": [(IMAGE, "mish"), (IMAGE, "mish(inplace = true)")],
    "leaky_relu": [(IMAGE, "leaky_relu"), (IMAGE, "leaky_relu(0.2, inplace = true)")],
    "elu": [(IMAGE, "elu"), (IMAGE, "elu(inplace = true)")],
    "prelu": [(IMAGE, "prelu"), (IMAGE, "prelu(per_channel = true)")],
    "softmax": [(IMAGE, "softmax")],
    "adaptive_maxpool2d": [(IMAGE, "adaptive_maxpool2d(6)")],
    "zero_pad2d": [(IMAGE, "zero_pad2d(0)")],
    "pixel_shuffle": [(IMAGE, "pixel_shuffle(1)")],
    "permute": [(IMAGE, "permute([0, 2, 1])"), (IMAGE, "permute([0, 1, 2])")],
    "scale": [(IMAGE, "scale(init = 0.5)")],
    # The tensor layers, where they keep the shape the residual adds to.
    "sum": [((THIN, "conv2d(4, 1)"), "sum(dim = 1, keepdim = true)")],
    "mean": [((THIN, "conv2d(4, 1)"), "mean(dim = [1], keepdim = true)")],
    "amax": [((THIN, "conv2d(4, 1)"), "amax(dim = -2, keepdim = true)")],
    "narrow": [(IMAGE, "narrow(0, 0, 4)")],
    "unflatten": [(IMAGE, "unflatten(0, [4])")],
    "conv1d": [(SEQUENCE, "conv1d(4, 3, padding = 1)")],
    "std_conv2d": [(IMAGE, "std_conv2d(4, 3, padding = 1, gamma = 1.7)")],
}

# The same ending reached through the forms that wrap it; {P} is the layer before, {L} the last.
FORMS = {
    "plain": "residual {{ {P}\n {L} }}",
    "labelled": "residual {{ {P}\n last: {L} }}",
    "group": "residual {{ {P}\n {{ {L} }} }}",
    "labelled group": "residual {{ {P}\n g: {{ {L}\n identity }} }}",
    "block": "residual {{ {P}\n ending() }}",
    "nested residual": "residual {{ {P}\n residual {{ {L} }} }}",
    "with shortcut": "residual {{ {P}\n {L} }} shortcut {{ {S} }}",
    "after relu": "residual {{ {P}\n relu\n {L} }}",
}

# An in-place layer first in a nested body would overwrite the inner shortcut's input
# (E0311), and one after relu overwrites what relu saved, in torch as here.
_NOT_WITH_INPLACE = {"nested residual", "after relu"}

# Every form for a kind's first variant; the other variants (arguments) in the plain form.
# The fast subset tries every ending in the plain form.
CASES = [pytest.param(inp, prev, last, form, id=f"{last} / {form}",
                      marks=() if form == "plain" else pytest.mark.slow)
         for kind, endings in ENDINGS.items() for i, ((inp, prev), last) in enumerate(endings)
         for form in (FORMS if i == 0 else ["plain"])
         if not ("inplace = true" in last and form in _NOT_WITH_INPLACE)]


# Combinators as the last step of a body.
COMBINATORS = {
    "concat": "residual { concat { conv2d(2, 1)\n { relu\n conv2d(2, 1) } } }",
    "dense": "residual { conv2d(2, 1)\n dense { conv2d(2, 3, padding = 1) } }",
    "gate": "residual { conv2d(4, 1)\n gate { adaptive_avgpool2d(1)\n conv2d(4, 1)\n sigmoid } }",
    "gate over relu": "residual { conv2d(4, 1)\n relu\n gate { adaptive_avgpool2d(1)\n sigmoid } }",
    "nested in place": "residual { conv2d(4, 1)\n residual { conv2d(4, 1)\n batchnorm2d } }",
    "empty body": "residual { identity }",
}


def _spec(inp, prev, last, form):
    shortcut = {"[8]": "linear(8)", "[4, 6]": "conv1d(4, 1)"}.get(inp, "conv2d(4, 1)")
    body = FORMS[form].format(P=prev, L=last, S=shortcut)
    return f"block ending() {{ {last} }}\nnetwork n() {{ input {inp}\n {body}\n relu }}"


# A residual's add in a generated forward: `out += identity` in place, `out2 = out + x` not.
_IN_PLACE = re.compile(r"^\s*(\w+) \+= (\w+)(  #.*)?$")
_OUT_OF_PLACE = re.compile(r"^\s*\w+ = \w+ \+ \w+(  #.*)?$")


def residual_adds(model) -> list[bool]:
    """Whether each residual add of the model's forwards is in place, in the order written."""
    found = []
    for m in model.modules():
        recipe = type(m).__dict__.get("_recipe")
        if recipe is None or recipe[4] is None:
            continue
        for line in recipe[4].splitlines():
            if _IN_PLACE.match(line):
                found.append(True)
            elif _OUT_OF_PLACE.match(line):
                found.append(False)
    return found


def out_of_place(model) -> None:
    """Give every module of ``model`` whose forward adds in place the same forward with
    each add out of place: the reference the built model must agree with."""
    for m in model.modules():
        recipe = type(m).__dict__.get("_recipe")
        if recipe is None or recipe[4] is None or "+=" not in recipe[4]:
            continue
        source = "\n".join(_IN_PLACE.sub(lambda g: g[0].replace(f"{g[1]} += {g[2]}", f"{g[1]} = {g[1]} + {g[2]}"),
                                          line) for line in recipe[4].splitlines()) + "\n"
        m.__class__ = spec_class(*recipe[:4], source, recipe[5])


def _run(model, x, weight):
    # Dropout and stochastic depth draw the same masks in both runs.
    torch.manual_seed(1)
    if x.is_cuda:
        torch.cuda.manual_seed(1)
    x = x.clone().requires_grad_(True)
    out = model(x)
    (out * weight).sum().backward()
    return out.detach(), x.grad, {k: p.grad for k, p in model.named_parameters()}


def differs(spec: str, monkeypatch, whitelist=None, device="cpu") -> str | None:
    """How the built model's train-mode forward and backward differ from the same
    model with every residual add out of place; None when they agree."""
    with monkeypatch.context() as mp:
        for kind in whitelist or ():
            mp.setattr(LAYERS[kind], "output_not_saved", True)
        torch.manual_seed(0)
        model = netdsl.build(spec, device=device).train()
    reference = copy.deepcopy(model)
    out_of_place(reference)
    shape = (3, *model.input_shape)
    x = torch.randn(shape, device=device)
    weight = torch.randn(reference(x).shape, device=device)
    reference.load_state_dict(model.state_dict())  # that call moved the running statistics
    want = _run(reference, x, weight)
    try:
        got = _run(model, x, weight)
    except RuntimeError as e:
        return f"{type(e).__name__}: {e}"
    if not torch.allclose(got[0], want[0], atol=1e-6):
        return "outputs differ"
    if not torch.allclose(got[1], want[1], atol=1e-6):
        return "input gradients differ"
    for k, g in want[2].items():
        if (g is None) != (got[2][k] is None) or (g is not None and not torch.allclose(got[2][k], g, atol=1e-6)):
            return f"gradient of {k} differs"
    return None


def test_every_layer_kind_is_tried():
    assert set(ENDINGS) == set(LAYERS)


@pytest.mark.parametrize("inp, prev, last, form", CASES)
def test_gradients_equal_the_out_of_place_reference(inp, prev, last, form, monkeypatch):
    assert differs(_spec(inp, prev, last, form), monkeypatch) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_too(monkeypatch):
    # cuDNN's convolution and batch norm keep other tensors than the CPU kernels.
    torch.backends.cudnn.deterministic = True
    for case in CASES:
        spec = _spec(*case.values)
        assert differs(spec, monkeypatch, device="cuda") is None, spec
    for body in COMBINATORS.values():
        spec = f"network n() {{ input [4, 6, 6]\n {body}\n relu }}"
        assert differs(spec, monkeypatch, device="cuda") is None, spec


@pytest.mark.slow
@pytest.mark.parametrize("body", COMBINATORS.values(), ids=list(COMBINATORS))
def test_combinator_endings_equal_the_out_of_place_reference(body, monkeypatch):
    spec = f"network n() {{ input [4, 6, 6]\n {body}\n relu }}"
    assert differs(spec, monkeypatch) is None


@pytest.mark.parametrize("last, inplace", [
    ("conv2d(4, 1)", True), ("batchnorm2d", True), ("maxpool2d(3, stride = 1, padding = 1)", True),
    ("adaptive_avgpool2d(6)", True), ("dropout(0.3)", True), ("stochastic_depth(0.5)", True),
    ("relu", False), ("relu(inplace = true)", False), ("sigmoid", False), ("tanh", False),
    ("silu", False), ("gelu", False), ("local_response_norm(2)", False),
])
def test_the_add_is_in_place_only_after_a_whitelisted_kind(last, inplace):
    model = netdsl.build(_spec(*IMAGE, last, "plain"), device="meta")
    assert residual_adds(model) == [inplace]


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0"])
def test_shipped_residual_bodies_stay_in_place(spec_path, name):
    # Their bodies end in batch norm (then stochastic depth): torchvision's `out += identity`.
    adds = residual_adds(netdsl.build(spec_path(name), device="meta"))
    assert adds and all(adds)


@pytest.mark.parametrize("last", ["relu", "relu(inplace = true)", "sigmoid", "tanh"])
def test_the_differential_test_catches_a_wrongly_whitelisted_kind(last, monkeypatch):
    # The comparison above must fail when a kind that saves its output is let through.
    spec = _spec(*IMAGE, last, "plain")
    assert differs(spec, monkeypatch, whitelist=set(LAYERS)) is not None
