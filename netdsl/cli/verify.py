"""``netdsl verify SPEC --against DOTTED.PATH``: is the spec's model the reference model?

Exit status: 0 equivalent, 1 not equivalent (the report says where) or the spec
has errors, 2 for a usage error (a dotted path that does not import, bad JSON).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import types

from .common import UsageError, compile_args, grant_of, spec_arguments

HELP = """\
Build the spec, load the reference model's state_dict into it strictly, and compare
parameter counts, eval outputs, training-mode outputs under one seed, and gradients.
Where outputs differ, the report names the first module whose output differs, with
the spec line that made it. Importing --against RUNS THAT MODULE'S PYTHON CODE, as
any import does: only name code you trust. (Specs themselves never run code.)
Exit status: 0 equivalent, 1 not equivalent or the spec has errors, 2 usage error."""


def register(sub) -> None:
    import argparse

    sp = sub.add_parser("verify", help="check a spec against a reference PyTorch model "
                                       "(importing --against runs its code)",
                        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    spec_arguments(sp, set_help="set a network hyperparameter of the spec (a netdsl expression); repeatable")
    sp.add_argument("--against", required=True, metavar="DOTTED.PATH",
                    help="the reference: a constructor or an nn.Module object, by its dotted "
                         "path, e.g. torchvision.models.resnet50; importing it runs that "
                         "module's code")
    sp.add_argument("--against-args", default="{}", metavar="JSON",
                    help='keyword arguments for the constructor, a JSON object: \'{"num_classes": 10}\'')
    sp.add_argument("--batch", type=_positive, default=2, metavar="N", help="batch size (default 2)")
    sp.add_argument("--seed", type=int, default=0,
                    help="seed of the reference's initialisation, the input, the training-mode "
                         "run and the loss (default 0)")
    sp.add_argument("--atol", type=_tolerance, default=1e-5, help="absolute tolerance (default 1e-5)")
    sp.add_argument("--rtol", type=_tolerance, default=1e-4,
                    help="relative tolerance (default 1e-4); an element agrees when "
                         "|ours - reference| <= atol + rtol * |reference|")
    sp.add_argument("--randomise-norms", action="store_true",
                    help="give the reference's batch norms random running statistics and affine "
                         "parameters first, so that eval mode exercises them (fresh ones are "
                         "nearly the identity)")
    sp.add_argument("--no-train", action="store_true", help="skip the training-mode outputs")
    sp.add_argument("--no-grad", action="store_true", help="skip the gradients")
    sp.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    sp.set_defaults(run=run)


def _positive(text: str) -> int:
    import argparse

    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expects a positive integer, got {text!r}")
    return n


def _tolerance(text: str) -> float:
    import argparse
    import math

    try:
        x = float(text)
    except ValueError:
        x = -1.0
    if not (x >= 0 and math.isfinite(x)):
        raise argparse.ArgumentTypeError(f"expects a non-negative number, got {text!r}")
    return x


def resolve(path: str):
    """The object a dotted path names: the longest prefix that imports as a module,
    then attributes. Anything wrong is a UsageError that says what.

    >>> resolve("collections.OrderedDict").__name__
    'OrderedDict'
    >>> resolve("collections.OrderDict")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
      ...
    netdsl.cli.common.UsageError: --against collections.OrderDict: module collections has no attribute
    OrderDict (did you mean OrderedDict?)
    """
    import difflib

    parts = path.split(".")
    if not path or not all(p.isidentifier() for p in parts):
        raise UsageError(f"--against expects a dotted path such as torchvision.models.resnet50, "
                         f"got {path!r}")
    # Left to right: an attribute where there is one, else a submodule to import.
    obj, where = _import(path, parts[0]), parts[0]
    if obj is None:
        raise UsageError(f"--against {path}: no module named {parts[0]} "
                         "(is it installed in this Python environment?)")
    for attr in parts[1:]:
        found = getattr(obj, attr) if hasattr(obj, attr) else None
        if found is None and isinstance(obj, types.ModuleType) and hasattr(obj, "__path__"):
            found = _import(path, f"{where}.{attr}")
        if found is None:
            names = [n for n in dir(obj) if not n.startswith("_")]
            near = difflib.get_close_matches(attr, names, n=1)
            kind = "module" if isinstance(obj, types.ModuleType) else type(obj).__name__
            raise UsageError(f"--against {path}: {kind} {where} has no attribute {attr}"
                             + (f" (did you mean {near[0]}?)" if near else ""))
        obj, where = found, f"{where}.{attr}"
    return obj


def _import(path: str, name: str):
    """The module ``name``, None if there is no such module; its own failure is a UsageError."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name:
            return None
        raise UsageError(f"--against {path}: importing {name} failed: {e}") from None
    except Exception as e:  # the module's own code failed: its error, not a traceback
        raise UsageError(f"--against {path}: importing {name} failed: "
                         f"{type(e).__name__}: {e}") from None


def _reference(path: str, args_text: str):
    """The reference module: ``path`` resolved, called with the JSON kwargs if it is a
    constructor."""
    from torch import nn

    try:
        kwargs = json.loads(args_text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--against-args is not valid JSON: {e}") from None
    if not isinstance(kwargs, dict):
        raise UsageError(f"--against-args must be a JSON object of keyword arguments, "
                         f"such as '{{\"num_classes\": 10}}', got {args_text!r}")
    obj = resolve(path)
    if isinstance(obj, nn.Module):
        if kwargs:
            raise UsageError(f"--against {path} is a module object, not a constructor: "
                             "--against-args does not apply")
        return obj
    if not callable(obj):
        raise UsageError(f"--against {path} is a {type(obj).__name__}, not a model constructor "
                         "or an nn.Module")
    try:
        model = obj(**kwargs)
    except Exception as e:
        raise UsageError(f"--against {path}: calling it with {json.dumps(kwargs)} failed: "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"--against {path} returned a {type(model).__name__}, not an nn.Module")
    return model


def run(args) -> int:
    import torch

    from ..analysis.compare import compare, module_spans
    from ..backend.lower import lower
    from ..testing import randomise_norms

    net = compile_args(args)  # the spec first: its errors come without waiting for the reference
    if "" not in sys.path and os.getcwd() not in sys.path:
        # As `python -m` does: the user's own modules, in the current directory, import.
        sys.path.insert(0, os.getcwd())
    torch.manual_seed(args.seed)  # the reference's initial weights: the same report each run
    ref = _reference(args.against, args.against_args)
    if args.randomise_norms:
        randomise_norms(ref, args.seed)
    model = lower(net, device="cpu", grant=grant_of(args))
    x = torch.randn(args.batch, *net.input_shape, generator=torch.Generator().manual_seed(args.seed))
    report = compare(model, ref, x, spans=module_spans(net), atol=args.atol, rtol=args.rtol,
                     seed=args.seed, train=not args.no_train, gradients=not args.no_grad,
                     spec_name=str(args.spec), reference_name=args.against)
    if args.format == "json":
        print(json.dumps(report.to_dict()))
    else:
        print(report.render())
    sys.stdout.flush()
    return 0 if report.ok else 1
