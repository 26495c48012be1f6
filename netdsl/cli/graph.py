"""``netdsl graph SPEC``: the network as a Mermaid or DOT diagram, or an SVG drawn by Graphviz."""

from __future__ import annotations

import sys

from .common import UsageError, positive_int, spec_arguments

FORMATS = ("mermaid", "dot", "svg")
# GitHub's Mermaid refuses a chart of this many edges or more (its maxEdges).
MERMAID_MAX_EDGES = 500
# A diagram of a few thousand nodes lays out in seconds; a minute means something is wrong.
DOT_TIMEOUT_S = 120
INSTALL_GRAPHVIZ = ("--format svg runs Graphviz's `dot` program, which is not on the PATH; "
                    "install Graphviz (apt install graphviz, brew install graphviz or "
                    "conda install graphviz), or write --format dot, which needs nothing "
                    "installed, and draw it elsewhere")


def register(sub) -> None:
    sp = sub.add_parser("graph", help="draw the network: a Mermaid or DOT diagram, or SVG with Graphviz")
    spec_arguments(sp)
    sp.add_argument("--format", choices=FORMATS, default="mermaid",
                    help="mermaid (default) and dot need nothing installed; svg runs Graphviz's dot")
    sp.add_argument("--depth", type=positive_int, metavar="N",
                    help="unfold modules down to depth N, folding deeper ones into one node "
                         "each (1 = top-level modules only; default: everything, or for Mermaid "
                         "the deepest that keeps under its 500 edges)")
    sp.add_argument("-o", "--output", metavar="FILE",
                    help="write the diagram to FILE (atomically), not stdout")
    sp.add_argument("--force", action="store_true",
                    help="let -o replace an existing file that netdsl did not write, or that was "
                         "changed since (never the spec or a file it imports)")
    sp.set_defaults(run=run)


def svg(dot: str) -> str:
    """The SVG that Graphviz's ``dot`` draws for DOT text; a UsageError when it is missing."""
    import shutil
    import subprocess  # here: every command line imports this module, few draw an SVG

    exe = shutil.which("dot")
    if exe is None:
        raise UsageError(INSTALL_GRAPHVIZ)
    try:
        r = subprocess.run([exe, "-Tsvg"], input=dot, capture_output=True, text=True,
                           timeout=DOT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise UsageError(f"Graphviz's dot ran for over {DOT_TIMEOUT_S} s; try a smaller --depth, "
                         "or --format dot") from None
    if r.returncode != 0:
        # netdsl wrote the DOT: a dot that refuses it is netdsl's bug (or a broken Graphviz).
        raise RuntimeError(f"Graphviz's dot ({exe}) exited with {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def mermaid_sized(net):
    """The diagram of ``net`` unfolded as deep as keeps it under Mermaid's edge limit,
    and that depth (1, the top-level modules, where nothing deeper fits)."""
    from ..analysis.graph import diagram

    depth, best = 1, diagram(net, depth=1)
    while True:
        d = diagram(net, depth=depth + 1)
        if len(d.edges) >= MERMAID_MAX_EDGES or len(d.edges) == len(best.edges):
            return best, depth
        depth, best = depth + 1, d


def run(args) -> int:
    from ..analysis.graph import diagram, to_dot, to_mermaid
    from .common import compile_args
    from .files import Refused, check_target, files_read, stamp, write_atomic

    if args.force and args.output is None:
        raise UsageError("--force only applies to -o")
    net, read = files_read(lambda: compile_args(args))
    try:
        target = None if args.output is None else \
            check_target(args.output, force=args.force, spec=args.spec, imports=read)
    except Refused as e:
        raise UsageError(str(e)) from None
    d = diagram(net, depth=args.depth)
    if args.format == "mermaid" and args.depth is None and len(d.edges) >= MERMAID_MAX_EDGES:
        d, depth = mermaid_sized(net)
        print(f"netdsl: folded modules below depth {depth}: Mermaid draws at most "
              f"{MERMAID_MAX_EDGES - 1} edges, and everything is {len(diagram(net).edges)}; "
              "--depth N chooses, --format dot or svg draws everything", file=sys.stderr)
    text = to_mermaid(d) if args.format == "mermaid" else to_dot(d)
    if args.format == "svg":
        text = svg(text)
    if not text.endswith("\n"):
        text += "\n"
    if target is None:
        sys.stdout.write(text)
        return 0
    try:
        write_atomic(target, stamp(text, args.format).encode("utf-8"), args.output)
    except Refused as e:
        raise UsageError(str(e)) from None
    return 0
