"""``netdsl sweep SPEC --grid NAME=VALUES ...``: check every combination, one row each."""

from __future__ import annotations

import csv
import io
import json
import sys

from ..diagnostics import escape
from .common import spec_arguments


def register(sub) -> None:
    sp = sub.add_parser(
        "sweep", help="check every combination of a grid of hyperparameters and print "
                      "params, MACs, activation memory and output shape for each")
    spec_arguments(sp, set_help="a hyperparameter fixed for the whole sweep; repeatable")
    sp.add_argument("--grid", action="append", default=[], required=True, metavar="NAME=VALUES",
                    help="values of one hyperparameter: a comma list of netdsl expressions "
                         "(1.0,1.1 or basic,bottleneck) and/or START:STOP:STEP ranges that "
                         "include STOP (1.0:2.0:0.1); repeat for more")
    sp.add_argument("--where", metavar="EXPR",
                    help="keep the rows where this netdsl expression holds; it reads the "
                         "columns params, macs, flops, activation_bytes, output_shape and the "
                         "grid names, e.g. \"macs < 1e9 and params < 8e6\"")
    sp.add_argument("--sort", metavar="COLUMN", help="order by a column or grid name; -COLUMN "
                                                     "for descending (rows with errors last)")
    sp.add_argument("--format", choices=("table", "json", "csv"), default="table")
    sp.add_argument("--jobs", type=int, metavar="N",
                    help="processes to run in (default: the cores this process may use)")
    sp.set_defaults(run=run)


def run(args) -> int:
    from ..tools.sweep import GridError, default_jobs, grid
    from ..tools.sweep import run as sweep
    from .common import UsageError, check_import_dirs, grant_of, parse_input, parse_limits, parse_overrides

    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs expects a positive integer, got {args.jobs}")
    check_import_dirs(args)
    try:
        grids = [grid(g) for g in args.grid]
        fixed = parse_overrides(args.overrides)
        clash = set(fixed) & {g.name for g in grids}
        if clash:
            raise UsageError(f"--set and --grid both give {', '.join(sorted(clash))}")
        rows = sweep(args.spec, grids, where=args.where, sort=args.sort, fixed=fixed,
                     network=args.network, input=parse_input(args.input), limits=parse_limits(args.limit),
                     import_path=args.import_path, jobs=args.jobs or default_jobs(), origin="cli",
                     grant=grant_of(args))
    except GridError as e:
        raise UsageError(str(e)) from None
    names = [g.name for g in grids]
    out = {"table": _table, "json": _json, "csv": _csv}[args.format](rows, names)
    sys.stdout.write(out)
    return 0


def _cells(row, names) -> dict:
    shape = "" if row.output_shape is None else "[" + ", ".join(map(str, row.output_shape)) + "]"
    return {**{n: _value(row.values[n]) for n in names}, "params": row.params, "macs": row.macs,
            "activation_bytes": row.activation_bytes, "output_shape": shape,
            "error": escape(row.error or "")}


def _value(v) -> str:
    # A value or a message may hold any character (a string from the spec or the command
    # line): shown with control characters as escapes, as diagnostics show them.
    return repr(v) if isinstance(v, float) else escape(str(v))


def _table(rows, names) -> str:
    def num(v: int | None) -> str:
        return "" if v is None else f"{v:,}"

    head = [*names, "params", "MACs", "activations", "output", ""]
    body = []
    for r in rows:
        c = _cells(r, names)
        body.append([*(c[n] for n in names), num(r.params), num(r.macs),
                     "" if r.activation_bytes is None else _mb(r.activation_bytes), c["output_shape"],
                     f"error[{c['error']}" .replace(" ", "]: ", 1) if r.error else ""])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    right = set(range(len(names), len(names) + 3))
    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()
    ok = sum(r.error is None for r in rows)
    lines = [line(head), *(line(b) for b in body),
             f"{len(rows)} row{'s' * (len(rows) != 1)}, {ok} checked, {len(rows) - ok} refused"]
    return "\n".join(lines) + "\n"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _json(rows, names) -> str:
    return json.dumps([{"values": r.values, "params": r.params, "macs": r.macs,
                        "activation_bytes": r.activation_bytes,
                        "output_shape": None if r.output_shape is None else list(r.output_shape),
                        "error": r.error, "code": r.code} for r in rows], indent=1) + "\n"


def _csv(rows, names) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, [*names, "params", "macs", "activation_bytes", "output_shape", "error"],
                       lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(_cells(r, names))
    return buf.getvalue()
