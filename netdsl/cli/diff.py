"""``netdsl diff A [B]``: the modules added, removed and changed from one spec to another,
or from one set of hyperparameters to another."""

from __future__ import annotations

import argparse
import json
import shlex

from .common import UsageError, parse_overrides, spec_argument, spec_arguments, table_arguments


def register(sub) -> None:
    sp = sub.add_parser("diff", help="compare two specs, or one spec under two sets of --set values: "
                                     "modules added, removed and changed, Δparams and ΔMACs")
    spec_arguments(sp, spec_help="path to a .net spec file, or - to read it from stdin",
                   set_help="set a network hyperparameter on both sides; repeatable")
    table_arguments(sp)
    for action in sp._actions:
        if action.dest == "spec":
            action.metavar = "A"
    sp.add_argument("other", nargs="?", metavar="B", type=spec_argument,
                    help="the spec to compare with A (default: A again, to compare "
                         "--set-a with --set-b)")
    sp.add_argument("--set-a", dest="overrides_a", action="append", default=[], metavar="NAME=VALUE",
                    help="set a hyperparameter of A only; repeatable")
    sp.add_argument("--set-b", dest="overrides_b", action="append", default=[], metavar="NAME=VALUE",
                    help="set a hyperparameter of B only; repeatable")
    sp.set_defaults(run=run)


def _side(args, spec: str, own: list[str]) -> argparse.Namespace:
    shared = parse_overrides(args.overrides)
    for name in parse_overrides(own):
        if name in shared:
            raise UsageError(f"--set {name} applies to both sides; it cannot also be given to one")
    return argparse.Namespace(**{**vars(args), "spec": spec, "overrides": args.overrides + own})


def _label(ns: argparse.Namespace) -> str:
    return f" ({shlex.join([str(ns.spec)] + [w for o in ns.overrides for w in ('--set', o)])})"


def run(args) -> int:
    from ..analysis.diff import diff, render_table, to_json
    from .common import compile_args

    a = _side(args, args.spec, args.overrides_a)
    b = _side(args, args.other or args.spec, args.overrides_b)
    d = diff(compile_args(a), compile_args(b))
    if args.format == "json":
        sets = lambda ns: dict(o.split("=", 1) for o in ns.overrides)  # noqa: E731
        print(json.dumps(to_json(d, args.depth, spec=(str(a.spec), str(b.spec)), set=(sets(a), sets(b)))))
    else:
        print(render_table(d, args.depth or 2, _label(a), _label(b)))
    return 0
