"""``netdsl lsp``: a language server over stdio, for editors.

It speaks the Language Server Protocol through pygls (``pip install -e '.[lsp]'``)
and answers from ide.py: diagnostics as you type (those of ``netdsl check``),
hover with shapes, parameters and MACs, go-to-definition across imports, and
completion of layers, blocks and their arguments. This module only converts
between the protocol and netdsl's positions, and keeps one state per open
document. A spec error is a diagnostic; an exception in netdsl is logged and
answered with nothing, so no request can stop the server.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types as t
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from .. import __version__
from ..diagnostics import Diagnostic
from ..span import Span
from . import ide


@dataclass
class _Document:
    """What the server knows of one open document, as of its latest text."""

    filename: str | None
    checked: ide.Checked
    index: ide.Index | None  # the last text that parsed: completion runs on half-typed lines


class NetdslServer(LanguageServer):
    def __init__(self):
        super().__init__("netdsl", __version__)
        self.docs: dict[str, _Document] = {}


def _guard(default=None):
    """Log any exception of a handler and answer ``default``: a netdsl bug must not
    end the session in the editor."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(ls: NetdslServer, params):
            try:
                return fn(ls, params)
            except Exception:  # noqa: BLE001 - reported to the client's log instead
                ls.window_log_message(t.LogMessageParams(
                    t.MessageType.Error, f"netdsl lsp: {fn.__name__} failed\n{traceback.format_exc()}"))
                return default
        return run
    return wrap


def _place(uri: str, ls: NetdslServer) -> tuple[str | None, Path]:
    path = to_fs_path(uri) if uri.startswith("file:") else None
    if path is not None:
        return path, Path(path).parent
    folders = list(ls.workspace.folders.values())
    root = to_fs_path(folders[0].uri) if folders else None
    return None, Path(root) if root else Path.cwd()


def _analyse(ls: NetdslServer, uri: str) -> None:
    doc = ls.workspace.get_text_document(uri)
    filename, base = _place(uri, ls)
    before = ls.docs.get(uri)
    try:
        checked = ide.check(doc.source, filename, base)
        index = ide.index(doc.source, filename, base)
    except Exception as e:  # noqa: BLE001 - a netdsl bug, shown where the user looks
        checked = ide.Checked([], [Diagnostic(
            "", f"netdsl failed on this spec: {type(e).__name__}: {e}", None, "",
            "this is a bug in netdsl; please report it with the spec")])
        index = None
        ls.window_log_message(t.LogMessageParams(t.MessageType.Error, traceback.format_exc()))
    if index is None and before is not None:
        index = before.index
    ls.docs[uri] = _Document(filename, checked, index)
    placed = ide.place(checked.diagnostics, filename, index)
    ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(
        uri, [_diagnostic(p, doc.lines, doc.position_codec) for p in placed], doc.version))


def _diagnostic(p: ide.Placed, lines: Sequence[str], codec) -> t.Diagnostic:
    d = p.diagnostic
    related = None
    if p.elsewhere is not None and p.elsewhere.file:
        other = _range(p.elsewhere, _read_lines(p.elsewhere.file), None)
        related = [t.DiagnosticRelatedInformation(
            t.Location(from_fs_path(str(Path(p.elsewhere.file).resolve())), other),
            d.label or d.message)]
    return t.Diagnostic(_range(p.span, lines, codec), p.message, t.DiagnosticSeverity.Error,
                        d.code or None, source="netdsl", related_information=related)


def _range(span: Span | None, lines: Sequence[str], codec) -> t.Range:
    """A netdsl span (1-based, in characters, end exclusive) as a protocol range
    (0-based, in the client's units), kept inside the document."""
    if span is None or not lines:
        return t.Range(t.Position(0, 0), t.Position(0, 0))
    line = min(max(span.line - 1, 0), len(lines) - 1)
    text = lines[line].rstrip("\r\n")
    start = min(max(span.column - 1, 0), len(text))
    if span.end_column and span.end_line in (None, span.line):
        end_line, end = line, min(max(span.end_column - 1, start), len(text))
    elif span.end_column and span.end_line and span.end_line - 1 < len(lines):
        end_line = span.end_line - 1
        end = min(max(span.end_column - 1, 0), len(lines[end_line].rstrip("\r\n")))
    else:
        end_line, end = line, max(len(text.rstrip()), start)
    if (end_line, end) == (line, start) and start < len(text):
        end += 1  # an empty range is easy to miss
    rng = t.Range(t.Position(line, start), t.Position(end_line, end))
    return codec.range_to_client_units(lines, rng) if codec is not None else rng


@functools.lru_cache(maxsize=64)
def _file_lines(path: str, mtime: float) -> tuple[str, ...]:
    return tuple(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(True))


def _read_lines(path: str) -> list[str]:
    try:
        return list(_file_lines(path, Path(path).stat().st_mtime))
    except OSError:
        return []


def _location(span: Span, uri: str, ls: NetdslServer) -> t.Location:
    doc = ls.docs.get(uri)
    if span.file is None or (doc is not None and span.file == doc.filename):
        target = uri
    else:
        target = from_fs_path(str(Path(span.file).resolve()))
    opened = ls.workspace.text_documents.get(target)
    if opened is not None:
        return t.Location(target, _range(span, opened.lines, opened.position_codec))
    # Not open: ASCII columns are the same in every unit, and spec files are nearly all ASCII.
    return t.Location(target, _range(span, _read_lines(to_fs_path(target) or ""), None))


def _position(ls: NetdslServer, uri: str, pos: t.Position) -> tuple[int, int]:
    doc = ls.workspace.get_text_document(uri)
    at = doc.position_codec.position_from_client_units(doc.lines, t.Position(pos.line, pos.character))
    return at.line + 1, at.character + 1


_KINDS = {"layer": t.CompletionItemKind.Class, "block": t.CompletionItemKind.Module,
          "function": t.CompletionItemKind.Function, "argument": t.CompletionItemKind.Property}


def make_server() -> NetdslServer:
    """The server, its features registered; ``start_io()`` runs it.

    >>> sorted(f for f in make_server().protocol.fm.features if f.startswith("textDocument/"))[:3]
    ['textDocument/completion', 'textDocument/definition', 'textDocument/didChange']
    """
    ls = NetdslServer()

    @ls.feature(t.TEXT_DOCUMENT_DID_OPEN)
    @_guard()
    def did_open(ls: NetdslServer, params: t.DidOpenTextDocumentParams):
        _analyse(ls, params.text_document.uri)

    @ls.feature(t.TEXT_DOCUMENT_DID_CHANGE)
    @_guard()
    def did_change(ls: NetdslServer, params: t.DidChangeTextDocumentParams):
        _analyse(ls, params.text_document.uri)

    @ls.feature(t.TEXT_DOCUMENT_DID_SAVE)
    @_guard()
    def did_save(ls: NetdslServer, params: t.DidSaveTextDocumentParams):
        # A saved file may be imported by the others: they are checked again too.
        for uri in list(ls.docs):
            _analyse(ls, uri)

    @ls.feature(t.TEXT_DOCUMENT_DID_CLOSE)
    @_guard()
    def did_close(ls: NetdslServer, params: t.DidCloseTextDocumentParams):
        ls.docs.pop(params.text_document.uri, None)
        ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(params.text_document.uri, []))

    @ls.feature(t.TEXT_DOCUMENT_HOVER)
    @_guard()
    def hover(ls: NetdslServer, params: t.HoverParams):
        uri = params.text_document.uri
        doc = ls.docs.get(uri)
        if doc is None or not doc.checked.networks:
            return None
        line, _ = _position(ls, uri, params.position)
        text = ide.hover(doc.checked.networks[0], doc.filename, line, doc.index)
        if text is None:
            return None
        return t.Hover(t.MarkupContent(t.MarkupKind.Markdown, text))

    @ls.feature(t.TEXT_DOCUMENT_DEFINITION)
    @_guard()
    def definition(ls: NetdslServer, params: t.DefinitionParams):
        uri = params.text_document.uri
        doc = ls.docs.get(uri)
        if doc is None or doc.index is None:
            return None
        line, column = _position(ls, uri, params.position)
        text = ls.workspace.get_text_document(uri).source
        span = ide.definition(text, doc.index, line, column)
        return _location(span, uri, ls) if span is not None else None

    @ls.feature(t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=["(", ","]))
    @_guard()
    def completion(ls: NetdslServer, params: t.CompletionParams):
        uri = params.text_document.uri
        doc = ls.docs.get(uri)
        line, column = _position(ls, uri, params.position)
        text = ls.workspace.get_text_document(uri).source
        items = ide.completions(text, doc.index if doc else None, line, column)
        return t.CompletionList(is_incomplete=False, items=[
            t.CompletionItem(c.label, kind=_KINDS[c.kind], detail=c.detail or None,
                             documentation=c.doc or None, insert_text=c.insert,
                             sort_text=("0" if c.kind == "argument" else "1") + c.label)
            for c in items])

    @ls.feature(t.TEXT_DOCUMENT_FORMATTING)
    @_guard()
    def formatting(ls: NetdslServer, params: t.DocumentFormattingParams):
        from ..diagnostics import NetdslError
        from ..syntax.fmt import format_text

        text = ls.workspace.get_text_document(params.text_document.uri).source
        try:
            out = format_text(text)
        except NetdslError:
            return None  # the diagnostics already say why; formatting waits for a parse
        if out == text:
            return []
        lines = text.split("\n")
        # One edit that replaces the whole text: the end is past the last line.
        return [t.TextEdit(t.Range(t.Position(0, 0), t.Position(len(lines), 0)), out)]

    return ls


def serve() -> int:
    """Run the server on stdin and stdout until the client says exit."""
    make_server().start_io()
    return 0
