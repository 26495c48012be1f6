"""Every per-kind fact lives in the catalogue (netdsl/layers/): no module elsewhere
names a layer kind. A fact about a kind that some module needs — what `apply`
calls, which activations a fused convolution folds, which layers size their output
by a window — is an attribute or method of its `Kind`, so a new kind states it in
one place and no list elsewhere forgets it."""

import ast
from pathlib import Path

from netdsl.layers import LAYERS

ROOT = Path(__file__).resolve().parents[2]

# Strings equal to a kind's name that are not the kind: where, and what they are.
NOT_KINDS = {
    ("netdsl/check/evaluate.py", "linear"): "torch.nn.init's nonlinearity names (calculate_gain)",
    ("netdsl/check/evaluate.py", "conv2d"): "a torch.nn.init nonlinearity name",
    ("netdsl/check/evaluate.py", "sigmoid"): "a torch.nn.init nonlinearity name",
    ("netdsl/check/evaluate.py", "tanh"): "a torch.nn.init nonlinearity name",
    ("netdsl/check/evaluate.py", "relu"): "a torch.nn.init nonlinearity name",
    ("netdsl/check/evaluate.py", "leaky_relu"): "a torch.nn.init nonlinearity name (the default)",
    ("netdsl/backend/codegen.py", "leaky_relu"): "torch.nn.init's default nonlinearity, left out of calls",
    ("netdsl/check/evaluate.py", "sum"): "the expression builtin sum(list)",
    ("netdsl/check/evaluate.py", "mean"): "the `mean` argument of the normal init schemes",
    ("netdsl/backend/codegen.py", "mean"): "the `mean` argument of the normal init schemes",
    ("netdsl/backend/forward.py", "identity"): "a variable name of the generated forward (the shortcut)",
    ("netdsl/backend/forward.py", "scale"): "a variable name of the generated forward (a gate's)",
}

# The runtime of 0.1.0's pickles is frozen as it was.
FROZEN = {"netdsl/backend/legacy.py"}


def _kind_names_in(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {(n.value, n.lineno) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in LAYERS
            and id(n) not in docstrings}


def test_no_module_outside_the_catalogue_names_a_layer_kind():
    found = []
    for path in sorted((ROOT / "netdsl").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("netdsl/layers/") or rel in FROZEN:
            continue
        for name, line in sorted(_kind_names_in(path)):
            if (rel, name) not in NOT_KINDS:
                found.append(f"{rel}:{line}: {name!r}")
    assert not found, "a per-kind fact outside the catalogue (make it an attribute of Kind):\n" + "\n".join(found)


def test_every_listed_exception_is_still_there():
    # A stale entry would let the next real kind name through.
    for (rel, name), why in NOT_KINDS.items():
        assert name in {n for n, _ in _kind_names_in(ROOT / rel)}, f"{rel}: {name!r} ({why}) is gone"


def test_the_facts_other_modules_read_are_the_catalogues():
    # What apply calls, what folds into a convolution, and the window layers: read by the
    # checker, the forward's writer and fusion, each from these attributes alone.
    assert {k for k, v in LAYERS.items() if v.function} >= {"relu", "flatten", "maxpool2d"}
    assert {k for k, v in LAYERS.items() if v.post_op(v.post_kwargs(None))} == \
        {"relu", "relu6", "hardswish", "hardsigmoid", "leaky_relu"}
    assert {k for k, v in LAYERS.items() if v.window} == {"conv2d", "maxpool2d", "avgpool2d"}
    assert {k for k, v in LAYERS.items() if v.projects} == {"conv2d", "conv1d", "linear"}
