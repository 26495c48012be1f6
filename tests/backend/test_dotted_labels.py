"""Dotted labels (`"convs.0"`): the module sits in a container made on first use, so
interleaved lists (Res2Net's convs.0, bns.0, convs.1, ...) get a reference's keys,
through build, the forward, export to Python, FX and the layer table."""

import pytest
import torch

import netdsl
from netdsl.analysis import analyse
from netdsl.backend.codegen import generate

SPEC = """block b(width = 4) as Interleaved {
    for i in range(3) {
        "convs.{i}": conv2d(width, 3, padding = 1, bias = false)
        "bns.{i}": batchnorm2d
        "deep.a.{i}": relu
    }
}
network n() {
    input [4, 6, 6]
    x: b()
}
"""


class Interleaved(torch.nn.Module):
    """What a hand-written model with two ModuleLists registers."""

    def __init__(self):
        super().__init__()
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(4, 4, 3, padding=1, bias=False) for _ in range(3))
        self.bns = torch.nn.ModuleList(torch.nn.BatchNorm2d(4) for _ in range(3))

    def forward(self, x):
        for conv, bn in zip(self.convs, self.bns, strict=True):
            x = torch.relu(bn(conv(x)))
        return x


def test_the_keys_and_outputs_are_two_modulelists():
    ref = Interleaved().eval()
    model = netdsl.build(SPEC).eval()
    assert list(model.x.state_dict()) == list(ref.state_dict())  # the same keys, in the same order
    model.x.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
        assert torch.equal(torch.fx.symbolic_trace(model)(x), ref(x))
    # The table's rows in the module tree's order, each container (no output of its own) first.
    rows = analyse(netdsl.compile(SPEC)).rows
    assert [r.name for r in rows] == [n for n, _ in model.named_modules() if n]
    assert [(r.name, r.params) for r in rows if r.type == "Container"] == [
        ("x.convs", 3 * 4 * 4 * 9), ("x.bns", 3 * 8), ("x.deep", 0), ("x.deep.a", 0)]


def test_the_export_builds_the_same_containers(tmp_path):
    model = netdsl.build(SPEC).eval()
    namespace: dict = {}
    exec(compile(generate(SPEC), "exported.py", "exec"), namespace)  # noqa: S102 - our own output
    exported = namespace["N"]().eval()
    assert list(exported.state_dict()) == list(model.state_dict())
    exported.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        assert torch.equal(exported(x), model(x))


@pytest.mark.parametrize("body, code", [
    ('"a..b": relu', "E0111"), ('".a": relu', "E0111"), ('"a.": relu', "E0111"),
    ('"convs.training": relu', "E0112"),
    ('convs: relu\n    "convs.0": relu', "E0108"), ('"convs.0": relu\n    convs: relu', "E0108"),
    ('"convs.0": relu\n    "convs.0": relu', "E0108"), ('"g.0": scale(init = 1.0)', "E0111"),
])
def test_a_dotted_label_that_cannot_be_a_path_is_refused(body, code):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(f"network n() {{\n    input [4, 8, 8]\n    {body}\n}}\n")
    assert [d.code for d in e.value.diagnostics] == [code]
