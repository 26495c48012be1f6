"""``netdsl fmt``: rewrite specs in the canonical layout (netdsl/syntax/fmt.py)."""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    sp = sub.add_parser(
        "fmt", help="rewrite specs in the canonical layout (comments kept)",
        description="Rewrite each spec in netdsl's one layout, in place; a directory means "
                    "every .net file under it, `-` reads stdin and writes stdout. Only a spec "
                    "that parses is touched: one that does not gets its diagnostics, and stays "
                    "as it was.")
    sp.add_argument("paths", nargs="+", metavar="SPEC", help="a .net file, a directory, or -")
    sp.add_argument("--check", action="store_true",
                    help="change nothing; list the files that would change, exit 1 if any")
    sp.add_argument("--diff", action="store_true",
                    help="change nothing; print what would change as a unified diff, exit 1 if any")
    sp.set_defaults(run=run)


def run(args) -> int:
    from ..diagnostics import NetdslError
    from ..limits import Limits
    from ..syntax.fmt import format_text
    from ..syntax.loader import decode, read_at_most, read_source
    from .common import UsageError
    from .files import replace_text

    limits = Limits()
    if "-" in args.paths:
        if len(args.paths) > 1:
            raise UsageError("`-` (stdin) cannot be given with other paths")
        data = read_at_most(sys.stdin.buffer, limits.max_file_bytes)  # never more than the limit allows
        if len(data) > limits.max_file_bytes:
            print(f"netdsl: error: standard input is over the limit of {limits.max_file_bytes} bytes; "
                  "it was not formatted", file=sys.stderr)
            return 1
        text = decode(data, "<stdin>", limits)
        out = format_text(text, "<stdin>", limits)
        if args.check or args.diff:
            _report(text, out, "<stdin>", args.diff)
            return int(out != text)
        sys.stdout.write(out)
        return 0

    files = _files(args.paths, UsageError)
    changed = failed = 0
    for path in files:
        try:
            text = read_source(path, limits)
            out = format_text(text, str(path), limits)
        except NetdslError as e:
            print(e.render(), file=sys.stderr)
            failed += 1
            continue
        if out == text:
            continue
        changed += 1
        if args.check or args.diff:
            _report(text, out, str(path), args.diff)
            continue
        try:
            replace_text(path, out)
        except OSError as e:
            print(f"netdsl: error: cannot write {path}: {e.strerror or e}; it was left as it was",
                  file=sys.stderr)
            failed += 1
            continue
        print(f"reformatted {path}", file=sys.stderr)
    verb = "would be reformatted" if args.check or args.diff else "reformatted"
    summary = [f"{changed} file{'s' * (changed != 1)} {verb}",
               f"{len(files) - changed - failed} left unchanged"]
    if failed:
        summary.append(f"{failed} not formatted (errors above)")
    print(", ".join(summary), file=sys.stderr)
    return 1 if failed or ((args.check or args.diff) and changed) else 0


def _files(paths: list[str], UsageError) -> list[Path]:
    from .files import files_under

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found, outside = files_under(p)
            for q in outside:
                print(f"netdsl: skipped {q}: a symbolic link out of {p}", file=sys.stderr)
            if not found and not outside:
                raise UsageError(f"{p} holds no .net files")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    return files


def _report(text: str, out: str, name: str, diff: bool) -> None:
    if diff:
        import difflib  # here: every command line imports this module

        lines = difflib.unified_diff(text.splitlines(True), out.splitlines(True),
                                     f"{name} (now)", f"{name} (formatted)")
        if sys.stdout.isatty():
            # For reading: the file's control characters as escapes, as diagnostics show
            # them. Into a pipe or a file the diff is a patch, and keeps the file's bytes.
            from ..diagnostics import escape

            lines = (escape(line.rstrip("\n")) + "\n" * line.endswith("\n") for line in lines)
        sys.stdout.writelines(lines)
    else:
        print(f"would reformat {name}", file=sys.stderr)
