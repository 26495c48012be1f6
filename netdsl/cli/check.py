"""``netdsl check SPEC``: check a spec and print its layer table, without building it."""

from __future__ import annotations

from .common import compile_args, spec_arguments, table_arguments


def register(sub) -> None:
    sp = sub.add_parser("check", help="check a spec and print its layer table, without building it")
    spec_arguments(sp)
    table_arguments(sp)
    sp.add_argument("--emit-ir", action="store_true", help="print the checked IR as JSON")
    sp.add_argument("--no-cache", action="store_true",
                    help="check in full, neither using nor updating the result cache")
    sp.set_defaults(run=run)


def run(args) -> int:
    import json

    from ..analysis.counts import analyse
    from ..analysis.table import render_table, to_json

    net = compile_args(args)
    if args.emit_ir:
        print(net.model_dump_json(indent=2))
        return 0
    a = analyse(net)
    if args.format == "json":
        # The same keys as `build`, so one reader serves both: nothing was built or traced.
        print(json.dumps(to_json(a, args.depth, fvcore=None, device=None)))
    else:
        print(render_table(a, args.depth or 2))
    return 0
