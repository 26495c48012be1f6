"""Expressions: the numeric functions and filtered comprehensions agree with
Python's, and misuse is a diagnostic at the call."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdsl.check.evaluate import Env, EvalError, Evaluator
from netdsl.syntax.parser import parse_expr


def ev(text):
    return Evaluator().evaluate(parse_expr(text), Env())


def code(text):
    with pytest.raises(EvalError) as e:
        ev(text)
    d = e.value.diagnostic
    return d.code, d.span.column, d.span.end_column


@given(st.floats(min_value=1e-300, max_value=1e300))
@settings(max_examples=50, deadline=None)
def test_logarithms_are_pythons(x):
    assert ev(f"log({x!r})") == math.log(x)
    assert ev(f"log2({x!r})") == math.log2(x)


@given(st.floats(min_value=-700, max_value=700), st.integers(min_value=-5, max_value=5))
@settings(max_examples=50, deadline=None)
def test_exp_and_round_with_digits_are_pythons(x, digits):
    assert ev(f"exp({x!r})") == math.exp(x)
    assert ev(f"round({x!r}, {digits})") == round(x, digits)


@given(st.lists(st.integers(min_value=-50, max_value=50), max_size=12), st.integers(-50, 50))
@settings(max_examples=50, deadline=None)
def test_a_filtered_comprehension_is_pythons(xs, k):
    got = ev(f"[x * 2 for x in {xs} if x > {k} and x % 3 != 0]")
    assert got == tuple(x * 2 for x in xs if x > k and x % 3 != 0)


@pytest.mark.parametrize("text, expected", [
    ("log(0)", ("E0210", 1, 7)),          # the whole call, not the argument
    ("1 + log2(-2)", ("E0210", 5, 13)),
    ("exp(1000)", ("E0215", 1, 10)),
    ("round(1.5, 0.5)", ("E0210", 12, 15)),
    ("round(1.5, 1000)", ("E0215", 12, 16)),
    ("log(\"a\")", ("E0210", 5, 8)),  # a wrong type: at the argument
    ("[x for x in [1, 2] if x]", ("E0214", 23, 24)),
    ("log(1, 2)", ("E0201", 1, 10)),
])
def test_misuse_is_located(text, expected):
    assert code(text) == expected


def test_the_filter_binds_the_loop_variable_and_an_if_expression_still_parses():
    assert ev("[x for x in [1, 2, 3] if x != 2]") == (1, 3)
    assert ev("[x if x > 1 else 0 for x in [1, 2]]") == (0, 2)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.integers(-9, 9), max_size=4), n=st.integers(-3, 6), left=st.booleans())
def test_list_repetition_is_pythons(items, n, left):
    text = f"{items} * {n}" if left else f"{n} * {items}"
    assert list(ev(text)) == items * n


@pytest.mark.parametrize("text, wanted", [("[1] * 2.0", "E0210"), ("[1] * true", "E0210"),
                                          ("[1, 2] * 6000", "E0403"), ('"ab" * 99999', "E0403"),
                                          ("[1] * [2]", "E0210")])
def test_list_repetition_needs_a_whole_count_within_the_limit(text, wanted):
    assert code(text)[0] == wanted


@settings(max_examples=200, deadline=None)
@given(a=st.lists(st.integers(-3, 3), max_size=4), b=st.lists(st.integers(-3, 3), max_size=4),
       lo=st.integers(-3, 3), hi=st.integers(-3, 3))
def test_comprehensions_of_several_for_clauses_are_pythons(a, b, lo, hi):
    text = f"[x * 10 + y for x in {a} if x > {lo} for y in {b} if y < {hi} + x]"
    assert list(ev(text)) == [x * 10 + y for x in a if x > lo for y in b if y < hi + x]
    # A later clause reads an earlier one's variable, and may rebind it, as in Python.
    assert list(ev(f"[x for x in {a} for x in range(2)]")) == [x for x in a for x in range(2)]  # noqa: B020
