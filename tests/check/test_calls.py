"""`reuse` (one module called again) and `apply` (a layer called as its torch
function): the built model, its analysis and its errors."""

import pickle

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import netdsl
from netdsl.analysis import analyse
from netdsl.check.calls import FUNCTIONS


def _codes(text):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(text)
    return [(d.code, d.span.line, d.span.column) for d in e.value.diagnostics]


def test_a_reused_layer_shares_its_weights_and_counts_once_in_params_and_per_call_in_macs():
    text = "network n() { input [4, 8, 8]\n conv: conv2d(4, 3, padding = 1)\n reuse conv\n reuse conv }"
    net = netdsl.compile(text)
    model = netdsl.build(text)
    assert [n for n, _ in model.named_parameters()] == ["conv.weight", "conv.bias"]
    a = analyse(net)
    assert a.params == 4 * 4 * 9 + 4
    assert a.macs == 3 * (4 * 8 * 8 * 4 * 9)
    x = torch.randn(1, 4, 8, 8)
    c = model.conv
    assert torch.equal(model(x), c(c(c(x))))


def test_reuse_is_per_scope_and_a_template_label_may_name_it():
    model = netdsl.build('network n() { input [2, 4, 4]\n for i in range(2) { "act{i}": relu }\n'
                         ' reuse "act{0 + 1}" }')
    assert [n for n, _ in model.named_children()] == ["act0", "act1"]
    assert _codes("block b() { reuse act }\nnetwork n() { input [2, 4, 4]\n act: relu\n b }") == \
        [("E0115", 1, 19)]


@pytest.mark.parametrize("text, code", [
    ("network n() { input [2, 4, 4]\n reuse act }", ("E0115", 2, 8)),
    ("block b() { relu }\nnetwork n() { input [2, 4, 4]\n g: b\n reuse g }", ("E0116", 4, 8)),
    ("network n() { input [2, 4, 4]\n c: conv2d(3, 1)\n reuse c }", ("E0320", 3, 2)),
    ("network n() { input [2, 4, 4]\n apply conv2d(3, 1) }", ("E0118", 2, 8)),
    ("network n() { input [2, 4, 4]\n apply batchnorm2d }", ("E0118", 2, 8)),
    ("block b() { relu }\nnetwork n() { input [2, 4, 4]\n apply b }", ("E0118", 3, 8)),
])
def test_misuse_is_a_diagnostic_at_the_smallest_span(text, code):
    assert _codes(text)[0] == code


def test_a_reused_in_place_layer_on_a_shared_tensor_is_refused():
    # The residual's input feeds the identity shortcut: relu in place there would overwrite it.
    text = "network n() { input [2, 4, 4]\n act: relu(inplace = true)\n residual { reuse act } }"
    assert _codes(text)[0][0] == "E0311"


@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
def test_apply_calls_the_same_function_as_the_module_and_registers_nothing(kind):
    args = {"maxpool2d": "(3, stride = 2, padding = 1)", "avgpool2d": "(3, stride = 1, padding = 1)",
            "adaptive_avgpool2d": "(2)", "sum": "(dim = [1, 2])", "mean": "(dim = -1, keepdim = true)",
            "amax": "(dim = 0)", "narrow": "(1, 1, 3)", "unflatten": "(0, [1, -1])",
            "dropout": "(0.3)"}.get(kind, "")
    functional = netdsl.build(f"network n() {{ input [2, 6, 6]\n apply {kind}{args} }}")
    module = netdsl.build(f"network n() {{ input [2, 6, 6]\n {kind}{args} }}")
    assert list(functional.named_modules())[1:] == []
    x = torch.randn(3, 2, 6, 6)
    functional.eval(), module.eval()
    assert torch.equal(functional(x), module(x))
    twin = pickle.loads(pickle.dumps(functional))
    assert torch.equal(twin(x), functional(x))
    # In training too, with the same random draws (dropout's mask).
    functional.train(), module.train()
    torch.manual_seed(3)
    a = functional(x)
    torch.manual_seed(3)
    assert torch.equal(a, module(x))


def test_a_block_that_calls_a_function_is_no_sequential():
    model = netdsl.build("block b() as Conv { c: conv2d(2, 1)\n apply relu }\n"
                         "network n() { input [2, 4, 4]\n x: b }")
    assert type(model.x).__name__ == "Conv" and not isinstance(model.x, nn.Sequential)
    x = torch.randn(1, 2, 4, 4)
    assert torch.equal(model(x), F.relu(model.x.c(x)))
    assert analyse(netdsl.compile("block b() as Conv { c: conv2d(2, 1)\n apply relu }\n"
                                  "network n() { input [2, 4, 4]\n x: b }")).rows[0].type == "Conv"
