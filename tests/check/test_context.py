"""The contract between the checker and its rule modules (netdsl/check/context.py):
a rule reaches the checker only through what Context declares, and the checker
has all of it. mypy checks the same statically; this holds without it."""

import ast
import inspect
from pathlib import Path

import pytest

import netdsl.check
from netdsl.check.checker import Checker
from netdsl.check.context import Context
from netdsl.syntax.loader import Program

PACKAGE = Path(netdsl.check.__file__).parent
# The modules whose functions take the checker as `cx: Context`.
RULE_MODULES = ["calls.py", "combinators.py", "dataflow.py", "extern.py", "flows.py"]


def declared() -> set[str]:
    """The attributes and methods Context declares."""
    methods = {name for name, _ in inspect.getmembers(Context, inspect.isfunction) if not name.startswith("_")}
    return set(Context.__annotations__) | methods


def used(module: str) -> set[str]:
    """What the functions of ``module`` read or call on their `cx` argument."""
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "cx"}


@pytest.mark.parametrize("module", RULE_MODULES)
def test_rules_use_only_what_the_context_declares(module):
    assert used(module), f"{module} no longer reaches the checker as `cx`: update RULE_MODULES"
    assert used(module) <= declared(), f"{module} uses {sorted(used(module) - declared())} of the checker"


def test_the_checker_has_everything_the_context_declares():
    checker = Checker(Program(None))
    assert not [name for name in declared() if not hasattr(checker, name)]


def test_every_declared_member_is_used_by_some_rule():
    # A member no rule uses is not part of the contract: drop it from Context.
    unused = declared() - set().union(*(used(m) for m in RULE_MODULES))
    assert not unused
