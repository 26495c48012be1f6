"""The checker's dispatch tables (netdsl/check/checker.py) against the AST
(netdsl/syntax/ast.py): every kind of statement has a rule, and every unit that
`item` wires into a flow has one too. A new statement kind is then a failing
test here, not a KeyError the first time a spec uses it."""

import inspect
from dataclasses import dataclass

import pytest

from netdsl.check.checker import COMBINATORS, STATEMENTS, Checker
from netdsl.syntax import ast

# `item` checks a layer or block use, and a group, itself; the other units by COMBINATORS.
OWN_UNITS = (ast.Use, ast.Group)


def statement_kinds() -> list[type]:
    """Every statement class that netdsl/syntax/ast.py defines."""
    return [cls for _, cls in inspect.getmembers(ast, inspect.isclass)
            if issubclass(cls, ast.Stmt) and cls is not ast.Stmt and cls.__module__ == ast.__name__]


def problem(kind: type) -> str | None:
    """What is missing for statement ``kind`` to be checked, or None."""
    if kind not in STATEMENTS:
        return f"ast.{kind.__name__} has no rule in STATEMENTS (netdsl/check/checker.py)"
    if STATEMENTS[kind] is Checker.item and kind not in OWN_UNITS and kind not in COMBINATORS:
        return f"ast.{kind.__name__} is a unit with no rule in COMBINATORS (netdsl/check/checker.py)"
    return None


def test_the_ast_is_read():
    kinds = statement_kinds()
    assert {ast.Let, ast.Use, ast.Residual, ast.Split, ast.NamedInput} <= set(kinds)
    assert len(kinds) >= 24


@pytest.mark.parametrize("kind", statement_kinds(), ids=lambda k: k.__name__)
def test_every_statement_kind_has_a_rule(kind):
    assert problem(kind) is None, problem(kind)


def test_the_tables_hold_statement_kinds_only():
    kinds = set(statement_kinds())
    assert set(STATEMENTS) <= kinds
    assert set(COMBINATORS) <= kinds - set(OWN_UNITS)
    # A combinator is a unit: it reaches its rule through `item`, which wires and names it.
    assert all(STATEMENTS[kind] is Checker.item for kind in COMBINATORS)


def _takes(rule, n: int) -> bool:
    try:
        inspect.signature(rule).bind(*[None] * n)
    except TypeError:
        return False
    return True


@pytest.mark.parametrize("table, args", [(STATEMENTS, 5), (COMBINATORS, 6)], ids=["statements", "combinators"])
def test_every_rule_takes_the_arguments_its_table_gives(table, args):
    wrong = [f"ast.{kind.__name__}: {rule.__qualname__}" for kind, rule in table.items() if not _takes(rule, args)]
    assert not wrong


def test_a_new_statement_kind_fails(monkeypatch):
    @dataclass(frozen=True)
    class Twice(ast.Stmt):
        body: tuple

    Twice.__module__ = ast.__name__
    monkeypatch.setattr(ast, "Twice", Twice, raising=False)
    assert Twice in statement_kinds()
    assert problem(Twice) == "ast.Twice has no rule in STATEMENTS (netdsl/check/checker.py)"
    monkeypatch.setitem(STATEMENTS, Twice, Checker.item)
    assert problem(Twice) == "ast.Twice is a unit with no rule in COMBINATORS (netdsl/check/checker.py)"
