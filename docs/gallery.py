"""Write docs/gallery.md: every shipped network with its diagram and its figures.

    python docs/gallery.py           # rewrite docs/gallery.md from specs/
    python docs/gallery.py --check   # exit 1 when docs/gallery.md is not what it would write

tests/docs/test_gallery.py checks that the committed page is this script's output, so a
spec added to or changed in specs/ needs only a run of this script.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout: this checkout's netdsl
    sys.path.insert(0, str(ROOT))

from netdsl.analysis import analyse, fmt_bytes  # noqa: E402
from netdsl.analysis.graph import diagram, to_mermaid  # noqa: E402
from netdsl.api import compile_spec  # noqa: E402
from netdsl.limits import Limits  # noqa: E402
from netdsl.syntax.loader import load  # noqa: E402

PAGE = ROOT / "docs" / "gallery.md"
# The deepest view that stays readable on a page: GitHub draws at most 500 edges, and
# past some sixty boxes a top-down chart is a scroll, not a picture.
MAX_NODES, MAX_EDGES, MAX_DEPTH = 60, 100, 4
# The one module prefix granted to a spec that declares an extern (specs/tresnet.net uses
# timm's BlurPool2d), as the tests grant it (tests/shipped.py): a spec naming any other
# module fails here.
GRANT = "timm.layers"


def grant_for(path: Path) -> list[str] | None:
    """``[GRANT]`` for a spec that (or whose imports) declares an extern, else None."""
    program = load(path.read_text(encoding="utf-8"), str(path), path.parent, Limits())
    return [GRANT] if program.externs else None


def readable_depth(net) -> int:
    """The smallest --depth that draws the most (up to 4) while staying within MAX_NODES
    and MAX_EDGES."""
    best, seen = 1, None
    for depth in range(1, MAX_DEPTH + 1):
        d = diagram(net, depth=depth)
        if len(d.nodes) > MAX_NODES or len(d.edges) > MAX_EDGES:
            break
        if len(d.nodes) != seen:  # a deeper view that unfolds nothing more is not shown
            best, seen = depth, len(d.nodes)
    return best


def _shape(s) -> str:
    return "[" + ", ".join(map(str, s)) + "]"


def _si(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def _families() -> set[str]:
    """Spec files that other spec files import: the parametric families."""
    found = set()
    for path in (ROOT / "specs").glob("*.net"):
        found |= set(re.findall(r'^import "([^"]+)"', path.read_text(encoding="utf-8"), flags=re.M))
    return found


def render() -> str:
    specs = sorted((ROOT / "specs").glob("*.net"))
    families = _families()
    entries = []
    grants = {path.name: grant_for(path) for path in specs}
    for path in specs:
        net = compile_spec(str(path), grant=grants[path.name])
        depth = readable_depth(net)
        entries.append((path.name, net, analyse(net), depth, to_mermaid(diagram(net, depth=depth))))
    shown = [e for e in entries if e[0] not in families]
    same = {}
    for e in entries:
        if e[0] in families:
            twin = next((s for s in shown if s[4] == e[4] and s[2].params == e[2].params), None)
            if twin is None:
                shown.append(e)
            else:
                same[e[0]] = twin
    out = [
        "# Gallery",
        "",
        "Every network shipped in `specs/`, drawn by `netdsl graph` and measured by",
        "`netdsl check` (see [cli.md](cli.md)). Each diagram is drawn at the deepest",
        f"`--depth` that keeps it within {MAX_NODES} boxes and {MAX_EDGES} edges; run the command",
        "under it with a larger `--depth` for more. Boxes with a double edge are modules folded",
        "into one box, with the combinators they hide; dashed edges are residual and",
        "dense connections; every box gives its output shape for one sample.",
        "",
        "This page is generated: `python docs/gallery.py` writes it from `specs/`, and",
        "`tests/docs/test_gallery.py` checks that it is up to date.",
        "",
        "| network | spec | input | output | params | MACs | activations |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for name, net, a, _depth, _ in shown:
        out.append(f"| [{net.name}](#{net.name}) | `specs/{name}` | {_shape(a.input)} | "
                   f"{_shape(a.output_shape)} | {_si(a.params)} | {_si(a.macs)} | "
                   f"{fmt_bytes(a.activation_bytes)} |")
    out += ["", "MACs are multiply-accumulates for one sample in eval mode (FLOPs = 2 × MACs);",
            "activations are the forward/backward pass size torchinfo reports for batch 1."]
    for name, net, a, depth, mermaid in shown:
        out += [
            "",
            f"## {net.name}",
            "",
            f"`specs/{name}`: input {_shape(a.input)} → {_shape(a.output_shape)}" +
            (f", and in training the side output{'s' if len(net.outputs) > 1 else ''} "
             + ", ".join(f"`{o}`" for o in net.outputs) if net.outputs else "") + ".",
            "",
            "| params | MACs | FLOPs | activations | largest tensor |",
            "|---:|---:|---:|---:|---|",
            f"| {a.params:,} | {a.macs:,} | {_si(a.flops)} | {fmt_bytes(a.activation_bytes)} | "
            f"{fmt_bytes(a.largest_activation_bytes)} at `{a.largest_activation}` |",
            "",
            f"`netdsl graph specs/{name}{' --allow-module ' + GRANT if grants[name] else ''} --depth {depth}`:",
            "",
            "```mermaid",
            mermaid,
            "```",
        ]
    if same:
        out += ["", "## Families", "",
                "These files define a network with parameters; the networks above are made",
                "from them. At its defaults each is the network named here (same diagram and",
                "figures); `--set` gives the others, e.g. `netdsl graph specs/resnet.net --set depth=18`.",
                ""]
        for name, twin in sorted(same.items()):
            out.append(f"- `specs/{name}`: [{twin[1].name}](#{twin[1].name})")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv[1:] == ["--check"]:
        if PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE} is out of date: run python docs/gallery.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
