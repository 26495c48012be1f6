"""The one walk over the IR (netdsl/ir/walk.py) and every consumer of it.

Every construct (IR node kind that is not a layer) against every consumer: a
consumer with rules per construct (lowering, the forward's writer, analysis, the
diagram) must have one for each, or say it looks through it; a consumer that
walks every construct the same way (the limits, diff, the editor's index) must
reach the nodes inside any construct, one it has never heard of included. A new
construct is then a failing test here, not a walker that forgot it."""

from typing import ClassVar, Literal

import pytest
import torch

import netdsl
from netdsl import ir
from netdsl.analysis import counts, diff, graph
from netdsl.api import _check_module_depth
from netdsl.backend import forward, lower
from netdsl.ir.walk import Visitor, bodies, children, json_step, kind_of, walk
from netdsl.limits import Limits
from netdsl.tools import ide

KINDS = [c.model_fields["kind"].default for c in ir.CONSTRUCTS]

# Consumers with a rule per construct: how each says which kinds it has rules for.
RULED = {
    "lowering": lower._Lowering.handles,
    "forward": forward.ForwardWriter.handles,
    "analysis: modules": counts.Modules.handles,
    "analysis: tensors": counts._Tensors.handles,
    "analysis: own tensor": counts._Own.handles,
    "graph": graph.handles,
}


def test_the_constructs_are_every_node_kind_of_the_union_but_layers():
    union = {cls.model_fields["kind"].default for cls in ir.AnyNode.__args__[0].__args__
             if not issubclass(cls, ir.Layer)}
    assert set(KINDS) == union


@pytest.mark.parametrize("consumer", RULED)
@pytest.mark.parametrize("kind", ["layer"] + KINDS)
def test_every_consumer_has_a_rule_for_every_kind(consumer, kind):
    assert RULED[consumer](kind), f"{consumer} has no rule for `{kind}` nodes"


# -- a construct netdsl has never heard of


class Twice(ir.Node):
    """A made-up construct: its body run twice. No consumer knows it."""

    kind: Literal["twice"] = "twice"
    body_fields: ClassVar[tuple[str, ...]] = ("body",)
    body: tuple
    in_shape: tuple
    out_shape: tuple


def _network_with_twice():
    inner = netdsl.compile("network n() { input [3, 8, 8]\n c: conv2d(3, 3, padding = 1) }")
    twice = Twice(body=inner.body, in_shape=(3, 8, 8), out_shape=(3, 8, 8))
    return inner.model_copy(update={"body": (twice,)}), inner.body[0]  # unvalidated: a kind no union has


def test_the_walk_finds_the_bodies_of_any_construct():
    net, conv = _network_with_twice()
    assert bodies(net.body[0]) == [(conv,)] and children(net.body[0]) == (conv,)
    assert [kind_of(n) for n in walk(net.body)] == ["twice", "layer"]


@pytest.mark.parametrize("consumer", RULED)
def test_a_ruled_consumer_refuses_a_construct_it_has_no_rule_for(consumer):
    # Not a silent guess: the construct's kind is named.
    assert not RULED[consumer]("twice")
    net, _ = _network_with_twice()
    visitors = {"lowering": lambda: lower._Lowering("meta").visit(net.body[0], torch.nn.Module()),
                "forward": lambda: forward.write(net.body),
                "analysis: modules": lambda: counts._modules(net.body),
                "analysis: tensors": lambda: counts._tensors(net.body, ""),
                "analysis: own tensor": lambda: counts._OWN.visit(net.body[0]),
                "graph": lambda: graph.diagram(net)}
    with pytest.raises((NotImplementedError, KeyError), match="twice"):
        visitors[consumer]()


def test_the_generic_consumers_reach_inside_a_new_construct():
    net, conv = _network_with_twice()
    # the limits: the nesting under a construct counts
    with pytest.raises(netdsl.NetdslError, match="nested more than 1 deep"):
        _check_module_depth(net.model_copy(update={"body": (
            Twice(body=(net.body[0],), in_shape=(3, 8, 8), out_shape=(3, 8, 8)),)}),
            Limits(max_nesting=1), {})
    # the editor's index names the modules inside it
    assert [name for _, name in ide._children(net.body[0], "(twice)")] == ["c"]
    # diff lists its modules as the enclosing scope's
    assert [m.name for m in diff.modules(net)] == ["c"]


def test_json_step_is_the_nesting_of_the_ir_as_json():
    # What the depth limit counts is what pydantic writes: 2 levels for a body, 3 for several.
    import json

    def depth(o, d=0):
        if isinstance(o, dict):
            return max([d] + [depth(v, d + 1) for v in o.values()])
        if isinstance(o, list):
            return max([d] + [depth(v, d + 1) for v in o])
        return d

    net = netdsl.compile("network n() { input [4, 8, 8]\n residual { relu }\n concat { relu\n relu }\n"
                         " dense { relu }\n split { relu\n relu }\n g: { relu }\n gate { sigmoid } }")
    for node in net.body:
        data = json.loads(node.model_dump_json())
        child = json.loads(children(node)[0].model_dump_json())
        # the node's own depth minus its deepest child's: the levels between them
        assert depth(data) - depth(child) == json_step(node), node.kind


def test_every_visitor_names_the_kind_it_lacks():
    class Partial(Visitor):
        def visit_layer(self, node):
            return "layer"

    net = netdsl.compile("network n() { input [3, 8, 8]\n residual { relu } }")
    with pytest.raises(NotImplementedError, match="Partial has no rule for `residual`"):
        Partial().visit(net.body[0])
