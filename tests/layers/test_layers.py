"""The catalogue (netdsl/layers), kind by kind: every entry is covered here with
no change to this file. Its example builds the torch module its description
names; the static parameter count and MACs equal the built module's and
fvcore's; the initial values equal those torch's own constructor gives under the
same seed, also where a spec declares the scheme of one parameter; and the
autograd flags are consistent."""

import importlib
import logging
import warnings

import pytest
import torch

import netdsl
from netdsl.analysis import analyse
from netdsl.layers import LAYERS, NODES, OUTPUT_NOT_SAVED, PASS_THROUGH, SAVES_OUTPUT


def spec(kind: str, init: str = "") -> str:
    sig = LAYERS[kind]
    return f"network n() {{\n input {list(sig.example_input)}\n {init}\n l: {sig.use}\n}}"


def torch_module(kind: str, node):
    desc = LAYERS[kind].torch(node)
    mod, cls = desc.cls.rsplit(".", 1)
    return getattr(importlib.import_module(mod), cls)(**desc.kwargs)


KINDS = sorted(LAYERS)
MODULE_KINDS = [k for k in KINDS if not LAYERS[k].bare_parameter]


@pytest.mark.parametrize("kind", MODULE_KINDS)
def test_the_built_module_is_the_one_the_description_names(kind):
    net = netdsl.compile(spec(kind))
    model = netdsl.build(spec(kind))
    desc = LAYERS[kind].torch(net.body[0])
    assert type(model.l).__name__ == desc.name
    assert repr(model.l) == repr(torch_module(kind, net.body[0]))


@pytest.mark.parametrize("kind", KINDS)
def test_params_and_macs_equal_the_built_module_and_fvcore(kind):
    from fvcore.nn import FlopCountAnalysis

    net = netdsl.compile(spec(kind))
    model = netdsl.build(spec(kind)).eval()
    a = analyse(net)
    assert a.params == sum(p.numel() for p in model.parameters())
    x = torch.randn(1, *LAYERS[kind].example_input)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        flops = FlopCountAnalysis(model, x)
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        assert a.macs == flops.total()
    if kind in ("conv2d", "conv_transpose2d", "linear", "upsample", "layer_norm"):
        assert a.macs > 0, "the example must exercise the rule"


@pytest.mark.parametrize("kind", MODULE_KINDS)
def test_fresh_values_equal_torchs_constructor_under_one_seed(kind):
    net = netdsl.compile(spec(kind))
    torch.manual_seed(3)
    ours = netdsl.build(spec(kind)).l
    torch.manual_seed(3)
    theirs = torch_module(kind, net.body[0])
    for (n, p), (m, q) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
        assert n == m
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)


@pytest.mark.parametrize("kind", [k for k in MODULE_KINDS if len(LAYERS[k].parameters) > 1])
def test_a_declared_scheme_leaves_the_others_at_torchs_defaults(kind):
    # The last parameter declared: the earlier ones draw from the generator in torch's order.
    last = LAYERS[kind].parameters[-1]
    src = spec(kind, f"init {kind}.{last} = constant(0.75)")
    net = netdsl.compile(src)
    torch.manual_seed(4)
    ours = netdsl.build(src).l
    torch.manual_seed(4)
    theirs = torch_module(kind, net.body[0])
    own = dict(ours.named_parameters())
    assert own, "the example must have parameters"
    for n, q in theirs.named_parameters():
        if n == last:
            assert torch.all(own[n] == 0.75)
        else:
            torch.testing.assert_close(own[n], q, rtol=0, atol=0, msg=n)


def test_a_bare_parameter_is_its_owners_and_starts_at_its_value():
    model = netdsl.build(spec("scale"))
    assert [n for n, _ in model.named_parameters()] == ["l"]
    assert model.l.shape == (2, 1, 1) and torch.all(model.l == 0.5)
    x = torch.randn(3, 2, 6, 6)
    torch.testing.assert_close(model(x), x * 0.5)


def test_every_kind_has_its_ir_class_and_consistent_flags():
    assert set(LAYERS) <= {k for n in NODES for k in n.model_fields["kind"].annotation.__args__}
    assert not SAVES_OUTPUT & OUTPUT_NOT_SAVED
    assert not PASS_THROUGH & OUTPUT_NOT_SAVED
    for kind, sig in LAYERS.items():
        assert set(sig.matrix_parameters) <= set(sig.parameters), kind
        assert all(a.name not in ("name", "in_shape", "out_shape", "span", "kind") for a in sig.args)
