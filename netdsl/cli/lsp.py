"""``netdsl lsp``: the language server on stdin and stdout, for editors."""

from __future__ import annotations

from .common import UsageError


def register(sub) -> None:
    ls = sub.add_parser("lsp", help="run the language server on stdin/stdout, for editors")
    ls.add_argument("--stdio", action="store_true",
                    help="accepted for clients that pass it; stdio is the only transport")
    ls.set_defaults(run=run)


def run(args) -> int:
    try:
        from ..tools.lsp import serve
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] not in ("pygls", "lsprotocol"):
            raise
        # Not `pip install 'netdsl[lsp]'`: netdsl is not on PyPI, so that fails from a clone.
        raise UsageError("`netdsl lsp` needs pygls: pip install 'pygls>=2' (or, in a clone of "
                          "netdsl, pip install -e '.[lsp]')") from None
    return serve()
