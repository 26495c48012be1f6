"""``netdsl explain [CODE]``: what an error code means, with an example and the fix."""

from __future__ import annotations

from .common import UsageError


def register(sub) -> None:
    e = sub.add_parser("explain", help="explain an error code, e.g. netdsl explain E0301; "
                                       "without a code, list them all")
    e.add_argument("code", nargs="?")
    e.set_defaults(run=run)


def run(args) -> int:
    import shutil

    from ..codes import explain, render, titles

    if args.code is None:
        for code, title in titles().items():
            print(f"{code}  {title}")
        print("\nnetdsl explain CODE says what one means, with an example and the fix.")
        return 0
    text = explain(args.code)
    if text is None:
        raise UsageError(f"unknown error code {args.code!r}; codes look like E0301 "
                          "(netdsl explain lists them)")
    # Wide enough for the examples' diagnostics, narrow enough to read as prose.
    print(render(text, width=min(shutil.get_terminal_size().columns, 100) - 1), end="")
    return 0
