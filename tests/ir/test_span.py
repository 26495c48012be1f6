"""Spans: plain slots objects, embedded in the pydantic IR."""

import copy
import pickle

import pytest
from pydantic import ValidationError

import netdsl
from netdsl import ir
from netdsl.span import Span


def test_span_is_immutable():
    s = Span(line=1, column=2)
    with pytest.raises(AttributeError, match="immutable"):
        s.line = 3


def test_span_pickles_and_copies_with_its_fields():
    s = Span(file="a.net", line=3, column=4, end_line=3, end_column=9)
    for t in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s), copy.copy(s)):
        assert t.as_dict() == s.as_dict()


def test_ir_json_keeps_spans():
    net = netdsl.compile("network n() { input [3, 8, 8]\n conv2d(4, 3) }")
    back = ir.Network.model_validate_json(net.model_dump_json())
    assert back == net
    assert back.body[0].span.as_dict() == net.body[0].span.as_dict()
    assert isinstance(back.body[0].span, Span)
    assert net.model_dump()["body"][0]["span"] == net.body[0].span.as_dict()


@pytest.mark.parametrize("bad", [{"line": 1}, {"line": 1, "column": 2, "extra": 3},
                                 {"line": "x", "column": 2}, 5])
def test_ir_refuses_a_malformed_span(bad):
    with pytest.raises(ValidationError):
        ir.Flatten(name="f", in_shape=(1,), out_shape=(1,), span=bad)
