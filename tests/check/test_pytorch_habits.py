"""What a PyTorch user writes out of habit: torch's argument order (E0223), torch's
argument names and Python's `True`. Each is refused with the netdsl spelling, and
the suggested call builds what torch's constructor, given the user's values, builds."""

import re

import pytest
import torch
from torch import nn

import netdsl

CASES = [
    # (input, the call as torch's order, torch's constructor on the same values)
    ("[3, 32, 32]", "conv2d(3, 16, 3)", lambda: nn.Conv2d(3, 16, 3)),
    ("[3, 32, 32]", "conv2d(3, 16, 3, padding = 1, bias = false)",
     lambda: nn.Conv2d(3, 16, 3, padding=1, bias=False)),
    ("[8, 32, 32]", "conv2d(8, 32, 5, 2)", lambda: nn.Conv2d(8, 32, 5, 2)),
    ("[192]", "linear(192, 10)", lambda: nn.Linear(192, 10)),
    ("[64, 8, 8]", "batchnorm2d(64)", lambda: nn.BatchNorm2d(64)),
    ("[64, 8, 8]", "batchnorm2d(64, momentum = 0.5)", lambda: nn.BatchNorm2d(64, momentum=0.5)),
    ("[32]", "batchnorm1d(32)", lambda: nn.BatchNorm1d(32)),
]


def _spec(shape: str, call: str) -> str:
    return f"network n() {{\n    input {shape}\n    layer: {call}\n}}\n"


@pytest.mark.parametrize("shape, call, reference", CASES, ids=[c[1] for c in CASES])
def test_torch_order_is_refused_and_the_suggestion_builds_torchs_module(shape, call, reference):
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile(_spec(shape, call))
    (d,) = info.value.diagnostics
    assert d.code == "E0223" and (d.span.line, d.span.column) == (3, 5 + len("layer: ") + len(call.split("(")[0]) + 1)
    meant = re.search(r"did you mean `(.+?)`\?", d.help).group(1)
    ours = netdsl.build(_spec(shape, meant)).layer
    theirs = reference()
    assert type(ours) is type(theirs)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}
    for attr in ("stride", "padding", "kernel_size", "eps", "momentum", "out_features"):
        assert getattr(ours, attr, None) == getattr(theirs, attr, None), attr


@pytest.mark.parametrize("shape, call", [
    ("[3, 32, 32]", "conv2d(3, 3, 2)"),            # 3 channels, a 3x3 kernel, stride 2
    ("[3, 32, 32]", "conv2d(3, 11, 4)"),           # AlexNet's stem kernel, on 3 channels out
    ("[3, 32, 32]", "conv2d(3, kernel_size = 16, stride = 3)"),  # meant as written
    ("[192]", "linear(192, true)"),
    ("[192]", "linear(192)"),
    ("[64, 8, 8]", "batchnorm2d(eps = 64)"),
    ("[1, 8, 8]", "batchnorm2d(1)"),
])
def test_a_call_that_reads_well_in_netdsls_order_is_not_refused(shape, call):
    codes = []
    try:
        netdsl.compile(_spec(shape, call))
    except netdsl.NetdslError as e:
        codes = [d.code for d in e.diagnostics]
    assert "E0223" not in codes


@pytest.mark.parametrize("call, help", [
    ("conv2d(4, kernel = 3)", "did you mean `kernel_size`?"),
    ("conv2d(4, 3, pad = 1)", "did you mean `padding`?"),
    ("conv2d(4, 3, in_channels = 3)", "netdsl infers `in_channels` from the layer's input; remove it"),
    ("dropout(prob = 0.5)", "did you mean `p`?"),
    ("upsample(scale = 2)", "did you mean `scale_factor`?"),
])
def test_torchs_argument_names_get_netdsls(call, help):
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile(_spec("[3, 8, 8]", call))
    # Only the misspelt argument: not also a "missing argument" for the one it names.
    assert [(d.code, d.help) for d in info.value.diagnostics] == [("E0202", help)]


@pytest.mark.parametrize("word", ["True", "False", "None"])
def test_pythons_constants_are_written_in_lower_case(word):
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile(_spec("[3, 8, 8]", f"conv2d(4, 3, bias = {word})"))
    (d,) = info.value.diagnostics
    assert d.code == "E0101" and d.help == f"netdsl writes `{word.lower()}` in lower case"


def test_the_suggested_call_runs_like_torchs_module():
    # The whole point: the values the user meant, on the same weights, give torch's outputs.
    with pytest.raises(netdsl.NetdslError) as info:
        netdsl.compile(_spec("[3, 16, 16]", "conv2d(3, 16, 3, padding = 1)"))
    meant = re.search(r"did you mean `(.+?)`\?", info.value.diagnostics[0].help).group(1)
    model = netdsl.build(_spec("[3, 16, 16]", meant)).eval()
    ref = nn.Conv2d(3, 16, 3, padding=1).eval()
    ref.load_state_dict(model.layer.state_dict())
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(model(x), ref(x))
