"""Labels that collide with module attributes (netdsl/check/reserved.py): check refuses
them as E0112, so build never meets nn.Module.add_module's KeyError."""

import keyword

import pytest
import torch
from torch import nn

import netdsl
from netdsl.backend import runtime as modules
from netdsl.check.reserved import RESERVED, reserved


def test_the_static_set_covers_every_attribute_of_the_runtime_classes():
    # The checker does not import torch, so the set is written out; this keeps it true
    # for the installed torch and for what netdsl.backend.runtime and lowering add.
    runtime = set()
    for obj in (nn.Module(), nn.Sequential(), modules.Network(), modules.Block(), modules.Group()):
        runtime |= set(dir(obj))
    built = netdsl.build("block p() { relu }\nblock q() { residual { relu } }\n"
                         "network n() { input [3, 4, 4]\n residual { relu }\n g: { c: conv2d(2, 1)\n"
                         " residual { relu } }\n side aux { flatten\n linear(2) }\n s: { relu }\n"
                         " p\n q }")
    containers = [m for m in built.modules() if isinstance(m, (nn.Sequential, modules.Block,
                                                               modules.Network))]
    kinds = {c for m in containers for c in type(m).__mro__}
    assert {nn.Sequential, modules.Block, modules.Group, modules.Network} <= kinds
    assert len({type(m) for m in containers}) == 5  # network, Sequential, Group, P, Q
    for m in containers:  # as lowering leaves them: the parents that take labelled children
        runtime |= set(dir(m)) - set(m._modules)
    missing = sorted(name for name in runtime if not reserved(name))
    assert not missing, f"add to netdsl/check/reserved.py: {missing}"


COLLIDING = ["training", "forward", "_modules", "state_dict", "cuda", "__class__", "_plan",
             "spec_name", "input_shape", "_steps", "T_destination", "requires_grad_"]


@pytest.mark.parametrize("name", COLLIDING)
@pytest.mark.parametrize("where", ["network", "block", "group", "template", "shortcut",
                                   "repeat"])
def test_a_colliding_label_is_refused_at_the_label(name, where):
    spec = {
        "network": f"network n() {{\n input [3, 8, 8]\n {name}: conv2d(4, 3)\n}}",
        "block": f"block b() {{\n {name}: relu\n}}\nnetwork n() {{\n input [3, 8, 8]\n b\n}}",
        "group": f"network n() {{\n input [3, 8, 8]\n g: {{\n {name}: relu }}\n}}",
        "template": f"network n(x = \"{name}\") {{\n input [3, 8, 8]\n \"{{x}}\": relu\n}}",
        "shortcut": f"network n() {{\n input [3, 8, 8]\n residual {{ conv2d(3, 1) }} "
                    f"shortcut {name} {{ relu }}\n}}",
        "repeat": f"network n() {{\n input [3, 8, 8]\n {name}: relu * 2\n}}",
    }[where]
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec)
    (d,) = e.value.diagnostics
    assert d.code == "E0112" and name in d.message and d.help
    line = spec.splitlines()[d.span.line - 1]
    at = line[d.span.column - 1:]
    assert at.startswith(name) or at.startswith('"{x}"'), (line, d.span)


TRICKY = ["Training", "forward_", "modules_", "train2", "zero", "self", "def", "class",
          "import", "None", "True", "lambda", "weight", "bias", "_x", "__x", "x__", "_", "__",
          "logits", "Sequential", "net", "layer", "é", "层", "_0", "T", "state", "dict",
          "add", "item", "keys", "sum", "max", "min", "len", "range", "copy", "data", "grad",
          "device", "dtype", "shape", "name", "parent", "children_", "cpu_", "outputs"]


def test_every_non_reserved_tricky_name_builds_and_names_its_module():
    names = [n for n in TRICKY if n not in RESERVED]
    assert len(names) == len(TRICKY)
    body = "\n".join(f' "{n}": conv2d(3, 1)' for n in names)
    spec = ("block b() {\n" + body + "\n}\nnetwork n() {\n input [3, 4, 4]\n" + body +
            "\n g: {\n" + body + "\n residual { relu } }\n blk: b\n}")
    model = netdsl.build(spec)
    keys = set(model.state_dict())
    for n in names:
        for prefix in ("", "g.", "blk."):
            assert f"{prefix}{n}.weight" in keys
    assert model(torch.zeros(2, 3, 4, 4)).shape == (2, 3, 4, 4)
    assert any(keyword.iskeyword(n) for n in names)  # keywords are fine as module names
