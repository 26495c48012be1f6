"""``netdsl lsp``: a language server over stdio, for editors.

It speaks the Language Server Protocol through pygls (``pip install -e '.[lsp]'``)
and answers from ide.py and the modules beside it: diagnostics as you type (those
of ``netdsl check``), hover with shapes, parameters and MACs, inlay hints of
shapes and repetition counts (inlay.py), the outline and the workspace's names
(symbols.py), quick fixes (the edits diagnostics propose, ``Diagnostic.fixes``),
references and rename (refs.py), semantic tokens (tokens.py), signature help
(signature.py), go-to-definition across imports, and completion (complete.py). This module only converts
between the protocol and netdsl's positions, and keeps one state per open
document. A spec error is a diagnostic; an exception in netdsl is logged and
answered with nothing, so no request can stop the server.

Checks run on a worker thread, one at a time, so that requests are answered from
what the last check found while the next one runs. A change is checked ``PAUSE``
after it comes (time for an editor's completion request sent with it to be
answered before the check holds the interpreter), or ``DELAY`` after it when it
came within ``DELAY`` of the one before (keys held down, a paste in parts),
unless another comes first. A check whose text a newer change replaced while it
ran publishes nothing, and the newest text is checked when it ends: versions
typed meanwhile are never checked.
"""

from __future__ import annotations

import asyncio
import functools
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types as t
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from .. import __version__
from ..diagnostics import Diagnostic
from ..grant import Grant
from ..limits import Limits
from ..span import Span
from ..syntax import ast
from . import complete, ide, inlay, refs, signature, symbols, tokens

PAUSE = 0.01  # seconds before a change is checked: the requests sent with it are answered first
DELAY = 0.03  # seconds: a change this soon after another waits as long for the next
STALE = "*(from the last version that checked)*"


@dataclass(frozen=True, eq=False)
class _Version:
    """One text of a document, and what checking it found."""

    version: int | None
    text: str
    checked: ide.Checked


@dataclass
class _Document:
    """What the server knows of one open document: where its imports are read from,
    what the last check of it found, the last text that checked (hover answers from
    it while the text has errors), and the index and syntax tree of the last text
    that parsed (completion and the outline work on half-typed lines)."""

    filename: str | None
    base: Path
    last: _Version | None = None
    good: _Version | None = None
    index: ide.Index | None = None
    parsed: tuple[str, ast.Module] | None = None
    scopes: refs.Scopes | None = None  # of the text ``parsed`` holds, once asked for


class NetdslServer(LanguageServer):
    """The server: the open documents, the checks that wait to start (a change soon
    after another waits for the next), those running, and the thread they run on."""

    def __init__(self):
        super().__init__("netdsl", __version__)
        self.docs: dict[str, _Document] = {}
        self.waiting: dict[str, asyncio.TimerHandle] = {}
        self.changed: dict[str, float] = {}  # when each document last changed, in the loop's time
        self.running: set[str] = set()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netdsl-check")
        self.defined = symbols.Defined()  # the top-level names of files on disk, read by `reader`
        self.reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netdsl-files")
        # The Python modules a spec's `extern` may import: the editor's own setting
        # (initializationOptions.allowModules), never a file's. None by default.
        self.grant = Grant()

    def shutdown(self):
        self.worker.shutdown(wait=False, cancel_futures=True)
        self.reader.shutdown(wait=False, cancel_futures=True)
        super().shutdown()


def _guard(default=None):
    """Log any exception of a handler and answer ``default``: a netdsl bug must not
    end the session in the editor."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(ls: NetdslServer, *args):
            try:
                return fn(ls, *args)
            except JsonRpcException:
                raise  # an answer of its own: the client shows its message
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


def _schedule(ls: NetdslServer, uri: str, delay: float) -> None:
    """Check ``uri`` in ``delay`` seconds, unless asked again before: then as that asks."""
    waiting = ls.waiting.pop(uri, None)
    if waiting is not None:
        waiting.cancel()
    ls.waiting[uri] = asyncio.get_running_loop().call_later(delay, _start, ls, uri)


@_guard()
def _start(ls: NetdslServer, uri: str) -> None:
    """Check the document's text as it is now, on the worker thread."""
    ls.waiting.pop(uri, None)
    doc = ls.docs.get(uri)
    if doc is None or uri in ls.running:
        return  # closed; or checked when the check in flight ends (_done)
    now = ls.workspace.get_text_document(uri)
    ls.running.add(uri)
    job = asyncio.get_running_loop().run_in_executor(ls.worker, _analyse, now.source, doc.filename, doc.base,
                                                     ls.grant)
    job.add_done_callback(functools.partial(_done, ls, uri, doc, now.version, now.source))


def _analyse(text: str, filename: str | None, base: Path,
             grant: Grant | None = None) -> tuple[ide.Checked, ide.Index | None]:
    checked = ide.check(text, filename, base, grant=grant)
    if checked.module is None:
        return checked, None  # it does not parse: nothing to index
    return checked, ide.index(text, filename, base, module=checked.module)


@_guard()
def _done(ls: NetdslServer, uri: str, doc: _Document, version: int | None, text: str, job) -> None:
    """Keep and publish what a check found, if its text is still the document's; else
    check the newest text, unless a change is already waiting to."""
    ls.running.discard(uri)
    if uri not in ls.docs or job.cancelled():
        return  # closed since, or the server is ending
    now = ls.workspace.get_text_document(uri)
    if ls.docs[uri] is not doc or now.version != version or now.source != text:
        if uri not in ls.waiting:
            _start(ls, uri)
        return
    if job.exception() is None:
        checked, index = job.result()
    else:  # a netdsl bug, shown where the user looks
        e = job.exception()
        checked = ide.Checked([], [Diagnostic(
            "", f"netdsl failed on this spec: {type(e).__name__}: {e}", None, "",
            "this is a bug in netdsl; please report it with the spec")])
        index = None
        ls.window_log_message(t.LogMessageParams(
            t.MessageType.Error, "".join(traceback.format_exception(type(e), e, e.__traceback__))))
    doc.last = _Version(version, text, checked)
    if not checked.diagnostics:
        doc.good = doc.last
    if index is not None:
        doc.index = index
    if checked.module is not None:
        doc.parsed = (text, checked.module)
    placed = ide.place(checked.diagnostics, doc.filename, doc.index)
    ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(
        uri, [_diagnostic(p, now.lines, now.position_codec) for p in placed], version))
    _refresh(ls)


def _refresh(ls: NetdslServer) -> None:
    """Ask the client to ask again for what a check changes and it asks for itself
    (inlay hints), where it says it can be asked."""
    caps = ls.client_capabilities.workspace
    if caps is not None and caps.inlay_hint is not None and caps.inlay_hint.refresh_support:
        ls.workspace_inlay_hint_refresh(None)


def _index(doc: _Document | None, text: str) -> ide.Index | None:
    """The document's index, from its last check; before its first check ends, of ``text``."""
    if doc is not None and doc.index is None and doc.last is None:
        doc.index = ide.index(text, doc.filename, doc.base)
    return doc.index if doc is not None else None


def _scope(doc: _Document | None, text: str, line: int) -> list[refs.Thing]:
    """The names in scope on ``line`` of ``text``: from the last text that parsed (the one
    being typed seldom does), at the line that was where this one is, or above it."""
    if doc is None or doc.parsed is None:
        return []
    old, module = doc.parsed
    if doc.scopes is None or doc.scopes.text is not old:  # once per text that parsed
        doc.scopes = refs.Scopes(module, old)
    if old != text:
        kept = ide.lines_kept(old, text)
        moved = {new: was for was, new in kept.items()}
        line = next((moved[n] for n in range(line, 0, -1) if n in moved), 0)
    return doc.scopes.at(line)


def _importers(ls: NetdslServer, changed: set[Path]) -> list[str]:
    """The open documents that import one of the ``changed`` files, directly or not (and
    those whose imports are not known, their text having never parsed); not the changed
    files themselves, whose text is the editor's."""
    out = []
    for uri, doc in ls.docs.items():
        if doc.filename is not None and ide._resolve(doc.filename) in changed:
            continue
        if doc.index is None or any(path in changed for path in doc.index.origin):
            out.append(uri)
    return out


def _hover(doc: _Document, text: str, line: int) -> str | None:
    """A hover on ``line`` of ``text``, the document's text now: from the last check, and
    where that says nothing there (its text has errors), from the last text that
    checked. A line changed since the text answered for is not answered."""
    for seen in dict.fromkeys([doc.last, doc.good]):
        if seen is None:
            continue
        same = seen.text == text
        before = line if same else ide.line_before(seen.text, text, line)
        shown = ide.hover(seen.checked, doc.filename, before) if before is not None else None
        if shown is not None:
            return shown if same else f"{STALE}\n\n{shown}"
    return None


def _inlay_hints(doc: _Document, text: str, first: int, last: int) -> list[tuple[int, inlay.Hint]]:
    """The hints of lines ``first`` to ``last`` of ``text``, the document's text now: from
    the last check, and from the last text that checked where that has none."""
    seen = [(v.text, v.checked) for v in dict.fromkeys([doc.last, doc.good]) if v is not None]
    return inlay.moved(seen, doc.filename, text, first, last, STALE)


def _inlay_hint(line: int, h: inlay.Hint, lines: Sequence[str], codec) -> t.InlayHint:
    at = codec.position_to_client_units(lines, t.Position(line - 1, h.column - 1))
    return t.InlayHint(at, h.label, kind=t.InlayHintKind.Type if h.kind == "shape" else None,
                       tooltip=h.tooltip or None, padding_left=True)


def _outline(doc: _Document, text: str) -> list[symbols.Symbol]:
    """The symbols of ``text``, the document's text now; where it does not parse, those of
    the last text that parsed whose first and last lines are unchanged, moved to where
    those lines are now."""
    module = ide.parse_or_none(text, doc.filename)
    if module is not None:
        doc.parsed = (text, module)
        return symbols.outline(module, text)
    if doc.parsed is None:
        return []
    old, module = doc.parsed
    return symbols.moved(symbols.outline(module, old), ide.lines_kept(old, text))


_SYMBOL_KINDS = {"network": t.SymbolKind.Module, "block": t.SymbolKind.Class, "let": t.SymbolKind.Variable,
                 "extern": t.SymbolKind.Class,
                 "group": t.SymbolKind.Namespace, "label": t.SymbolKind.Field}


def _document_symbol(s: symbols.Symbol, lines: Sequence[str], codec) -> t.DocumentSymbol:
    return t.DocumentSymbol(s.name, _SYMBOL_KINDS[s.kind], _range(s.span, lines, codec),
                            _range(s.name_span, lines, codec), detail=s.detail or None,
                            children=[_document_symbol(c, lines, codec) for c in s.children])


async def _workspace_symbols(ls: NetdslServer, query: str) -> list[t.WorkspaceSymbol]:
    """The networks, blocks and top-level ``let``s matching ``query`` of the open
    documents (as they are in the editor), of the files they import, and of the
    ``.net`` files in the workspace's folders. The files are read on a thread of their
    own: the first query reads them all (about 3 s for 330 files), and requests are
    answered meanwhile."""
    out: list[t.WorkspaceSymbol] = []
    done: set[Path] = set()

    def add(found, uri: str, lines: Sequence[str], codec) -> None:
        for name, kind, span in found:
            if symbols.matches(query, name):
                out.append(t.WorkspaceSymbol(name=name, kind=_SYMBOL_KINDS[kind],
                                             location=t.Location(uri, _range(span, lines, codec)),
                                             container_name=Path(to_fs_path(uri) or uri).name))

    for uri, doc in list(ls.docs.items()):
        now = ls.workspace.get_text_document(uri)
        module = ide.parse_or_none(now.source, doc.filename)
        if module is None and doc.parsed is not None and doc.parsed[0] == now.source:
            module = doc.parsed[1]
        if module is not None:
            add(symbols.top_level(module), uri, now.lines, now.position_codec)
        if doc.filename is not None:
            done.add(ide._resolve(doc.filename))
    folders = [to_fs_path(f.uri) for f in ls.workspace.folders.values()] or [ls.workspace.root_path]
    imported = [p for d in ls.docs.values() if d.index is not None for p in d.index.origin]

    def read() -> list[tuple[Path, list, list[str]]]:
        paths = list(imported)
        for folder in folders:
            if folder:
                paths.extend(symbols.spec_files(Path(folder)))
        return [(path, ls.defined(path), _read_lines(str(path)))
                for path in dict.fromkeys(ide._resolve(str(p)) for p in paths) if path not in done]

    for path, found, lines in await asyncio.get_running_loop().run_in_executor(ls.reader, read):
        add(found, from_fs_path(str(path)), lines, None)
    return out


def _actions(ls: NetdslServer, uri: str, doc: _Document, rng: t.Range) -> list[t.CodeAction]:
    """The quick fixes of the diagnostics published for the document's text as it is now
    whose range meets ``rng``: each fix a diagnostic carries, as an edit of this document."""
    now = ls.workspace.get_text_document(uri)
    last = doc.last
    if last is None or last.text != now.source:
        return []  # the fixes' positions are those of another text
    out = []
    for p in ide.place(last.checked.diagnostics, doc.filename, doc.index):
        if p.elsewhere is not None or p.span is None or not p.diagnostic.fixes:
            continue
        shown = _diagnostic(p, now.lines, now.position_codec)
        if not _meets(shown.range, rng):
            continue
        fixes = [f for f in p.diagnostic.fixes if ide._same_file(f.span.file, doc.filename)]
        for fix in fixes:
            edit = t.TextEdit(_exact(fix.span, now.lines, now.position_codec), fix.text)
            out.append(t.CodeAction(fix.title, kind=t.CodeActionKind.QuickFix, diagnostics=[shown],
                                    is_preferred=len(fixes) == 1, edit=t.WorkspaceEdit(changes={uri: [edit]})))
    return out


def _meets(a: t.Range, b: t.Range) -> bool:
    def key(p: t.Position) -> tuple[int, int]:
        return p.line, p.character
    return key(a.start) <= key(b.end) and key(b.start) <= key(a.end)


def _exact(span: Span, lines: Sequence[str], codec) -> t.Range:
    """A fix's span as a protocol range, as it is: unlike a diagnostic's, an empty one
    (an insertion) stays empty."""
    end_line = (span.end_line or span.line) - 1
    end = (span.end_column or span.column) - 1
    rng = t.Range(t.Position(span.line - 1, span.column - 1), t.Position(end_line, end))
    return codec.range_to_client_units(lines, rng)


class _Refused(JsonRpcException):
    """A rename refused, with the reason, which the editor shows (RequestFailed)."""

    CODE = -32803


def _imported(doc: _Document, text: str) -> dict[str, tuple[str, Span]]:
    """The blocks, networks and ``let``s the document's imports define, from its index."""
    idx = _index(doc, text)
    if idx is None:
        return {}
    return {d.name: (d.kind, d.span) for d in idx.definitions.values()
            if d.span.file is not None and not ide._same_file(d.span.file, doc.filename)}


def _in_importers(ls: NetdslServer, uri: str, doc: _Document, old: str, new: str) -> dict[str, list[t.TextEdit]]:
    """The edits that rename ``old``, a top-level name of the document ``uri``, to ``new``
    in the other open documents that import it (their text as the editor has it);
    refused where ``new`` is a name one of them has already."""
    if doc.filename is None:
        return {}
    here = ide._resolve(doc.filename)
    out: dict[str, list[t.TextEdit]] = {}
    for other, odoc in list(ls.docs.items()):
        if other == uri or odoc.index is None or here not in odoc.index.origin:
            continue
        now = ls.workspace.get_text_document(other)
        module = ide.parse_or_none(now.source, odoc.filename)
        imported = _imported(odoc, now.source)
        known = imported.get(old)
        if module is None or known is None or not ide._same_file(known[1].file, doc.filename):
            continue  # it does not parse, or `old` there is another file's (or its own)
        if new in imported or any(getattr(i, "name", None) == new for i in module.items):
            raise _Refused(f"`{new}` is already a name in {Path(odoc.filename or other).name}, which imports "
                           f"`{old}`")
        for thing in refs.things(module, now.source, imported):
            if thing.origin is not None and thing.name == old:
                out[other] = [t.TextEdit(_exact(s, now.lines, now.position_codec), new) for s in thing.spans]
    return out


def _protected(ls: NetdslServer) -> tuple[Path, ...]:
    """The folders whose labels are not renamed: the shipped specs, unless the client can
    ask the user to confirm an edit (then the rename is annotated as needing it)."""
    caps = ls.client_capabilities.workspace
    edits = caps.workspace_edit if caps is not None else None
    confirms = edits is not None and edits.document_changes and edits.change_annotation_support is not None
    return () if confirms else refs.SHIPPED


def _named(ls: NetdslServer, uri: str, pos: t.Position):
    """The syntax tree of the document's text now, the thing whose name is at ``pos``, and the
    text; None where the text does not parse or no name is there."""
    doc = ls.docs.get(uri)
    if doc is None:
        return None
    now = ls.workspace.get_text_document(uri)
    module = ide.parse_or_none(now.source, doc.filename)
    if module is None:
        return None
    line, column = _position(ls, uri, pos)
    return module, now, line, column, doc


def _thing(ls: NetdslServer, uri: str, pos: t.Position):
    """The name at ``pos`` (``refs.at``) and the document's text now; None where the text
    does not parse or no name is there."""
    found = _named(ls, uri, pos)
    if found is None:
        return None
    module, now, line, column, doc = found
    thing = refs.at(module, now.source, line, column, _imported(doc, now.source))
    return None if thing is None else (thing, now)


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
          "function": t.CompletionItemKind.Function, "argument": t.CompletionItemKind.Property,
          "value": t.CompletionItemKind.Value, "variable": t.CompletionItemKind.Variable,
          "label": t.CompletionItemKind.Field, "keyword": t.CompletionItemKind.Keyword}


def make_server() -> NetdslServer:
    """The server, its features registered; ``start_io()`` runs it.

    >>> sorted(f for f in make_server().protocol.fm.features if f.startswith("textDocument/"))[:3]
    ['textDocument/codeAction', 'textDocument/completion', 'textDocument/definition']
    """
    ls = NetdslServer()

    @ls.feature(t.INITIALIZE)
    @_guard()
    def initialize(ls: NetdslServer, params: t.InitializeParams):
        # `extern` classes are imported only under the editor's own grant, as
        # `--allow-module` gives it on the command line.
        options = params.initialization_options
        allowed = options.get("allowModules") if isinstance(options, dict) else None
        if allowed is not None:
            try:
                ls.grant = Grant.of(allowed)
            except (TypeError, ValueError) as e:
                ls.window_log_message(t.LogMessageParams(
                    t.MessageType.Warning, f"netdsl lsp: initializationOptions.allowModules ignored: {e}"))

    @ls.feature(t.INITIALIZED)
    @_guard()
    def initialized(ls: NetdslServer, params: t.InitializedParams):
        # Imports are read from disk: to see them change, ask the editor to say when a spec
        # file does (the protocol lets a server ask only this way, where the client can).
        caps = ls.client_capabilities.workspace
        watched = caps.did_change_watched_files if caps is not None else None
        if watched is not None and watched.dynamic_registration:
            ls.client_register_capability(t.RegistrationParams([t.Registration(
                "netdsl-watch", t.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                t.DidChangeWatchedFilesRegistrationOptions([t.FileSystemWatcher("**/*.net")]))]))

    @ls.feature(t.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    @_guard()
    def did_change_watched_files(ls: NetdslServer, params: t.DidChangeWatchedFilesParams):
        changed = {ide._resolve(p) for c in params.changes if (p := to_fs_path(c.uri)) is not None}
        for uri in _importers(ls, changed):
            _schedule(ls, uri, 0)

    @ls.feature(t.TEXT_DOCUMENT_DID_OPEN)
    @_guard()
    def did_open(ls: NetdslServer, params: t.DidOpenTextDocumentParams):
        uri = params.text_document.uri
        ls.docs[uri] = _Document(*_place(uri, ls))
        _schedule(ls, uri, 0)

    @ls.feature(t.TEXT_DOCUMENT_DID_CHANGE)
    @_guard()
    def did_change(ls: NetdslServer, params: t.DidChangeTextDocumentParams):
        uri = params.text_document.uri
        if uri in ls.docs:
            now = asyncio.get_running_loop().time()
            soon = now - ls.changed.get(uri, float("-inf")) < DELAY
            ls.changed[uri] = now
            _schedule(ls, uri, DELAY if soon else PAUSE)

    @ls.feature(t.TEXT_DOCUMENT_DID_SAVE)
    @_guard()
    def did_save(ls: NetdslServer, params: t.DidSaveTextDocumentParams):
        # A saved file may be imported by the others: they are checked again too.
        for uri in ls.docs:
            _schedule(ls, uri, 0)

    @ls.feature(t.TEXT_DOCUMENT_DID_CLOSE)
    @_guard()
    def did_close(ls: NetdslServer, params: t.DidCloseTextDocumentParams):
        uri = params.text_document.uri
        ls.docs.pop(uri, None)
        ls.changed.pop(uri, None)
        waiting = ls.waiting.pop(uri, None)
        if waiting is not None:
            waiting.cancel()
        ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(uri, []))

    @ls.feature(t.TEXT_DOCUMENT_HOVER)
    @_guard()
    def hover(ls: NetdslServer, params: t.HoverParams):
        uri = params.text_document.uri
        doc = ls.docs.get(uri)
        if doc is None:
            return None
        line, _ = _position(ls, uri, params.position)
        text = _hover(doc, ls.workspace.get_text_document(uri).source, line)
        if text is None:
            return None
        return t.Hover(t.MarkupContent(t.MarkupKind.Markdown, text))

    @ls.feature(t.TEXT_DOCUMENT_DEFINITION)
    @_guard()
    def definition(ls: NetdslServer, params: t.DefinitionParams):
        uri = params.text_document.uri
        doc = ls.docs.get(uri)
        text = ls.workspace.get_text_document(uri).source
        idx = _index(doc, text)
        line, column = _position(ls, uri, params.position)
        # Parameters, lets, loop variables, labels and named results by the spec's scoping
        # (refs.py); blocks, networks and top-level lets through imports by the index.
        module = ide.parse_or_none(text, doc.filename) if doc is not None else None
        thing = refs.at(module, text, line, column, _imported(doc, text)) if module is not None and doc else None
        target = (thing.spans[0] if thing.defined else thing.origin) if thing is not None else None
        if target is not None:
            return _location(target, uri, ls)
        if idx is None:
            return None
        span = ide.definition(text, idx, line, column)
        return _location(span, uri, ls) if span is not None else None

    @ls.feature(t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=["(", ","]))
    @_guard()
    def completion(ls: NetdslServer, params: t.CompletionParams):
        uri = params.text_document.uri
        line, column = _position(ls, uri, params.position)
        text = ls.workspace.get_text_document(uri).source
        doc = ls.docs.get(uri)
        items = complete.completions(text, _index(doc, text), line, column, scope=_scope(doc, text, line))
        return t.CompletionList(is_incomplete=False, items=[
            t.CompletionItem(c.label, kind=_KINDS[c.kind], detail=c.detail or None,
                             documentation=c.doc or None, insert_text=c.insert, sort_text=c.sort or "9" + c.label)
            for c in items])

    @ls.feature(t.TEXT_DOCUMENT_SIGNATURE_HELP, t.SignatureHelpOptions(trigger_characters=["(", ","],
                                                                       retrigger_characters=["="]))
    @_guard()
    def signature_help(ls: NetdslServer, params: t.SignatureHelpParams):
        uri = params.text_document.uri
        line, column = _position(ls, uri, params.position)
        text = ls.workspace.get_text_document(uri).source
        found = signature.signature_help(text, _index(ls.docs.get(uri), text), line, column)
        if found is None:
            return None
        return t.SignatureHelp([t.SignatureInformation(
            found.label, documentation=found.doc or None, active_parameter=found.active,
            parameters=[t.ParameterInformation(p.label, documentation=p.doc or None) for p in found.params])],
            active_signature=0, active_parameter=found.active)

    @ls.feature(t.TEXT_DOCUMENT_INLAY_HINT, t.InlayHintOptions(resolve_provider=False))
    @_guard()
    def inlay_hint(ls: NetdslServer, params: t.InlayHintParams):
        uri = params.text_document.uri
        doc = ls.docs.get(uri)
        if doc is None:
            return None
        now = ls.workspace.get_text_document(uri)
        rng = params.range
        return [_inlay_hint(line, h, now.lines, now.position_codec)
                for line, h in _inlay_hints(doc, now.source, rng.start.line + 1, rng.end.line + 1)]

    @ls.feature(t.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @_guard()
    def document_symbol(ls: NetdslServer, params: t.DocumentSymbolParams):
        uri = params.text_document.uri
        doc = ls.docs.get(uri)
        if doc is None:
            return None
        now = ls.workspace.get_text_document(uri)
        return [_document_symbol(s, now.lines, now.position_codec) for s in _outline(doc, now.source)]

    @ls.feature(t.WORKSPACE_SYMBOL)
    async def workspace_symbol(ls: NetdslServer, params: t.WorkspaceSymbolParams):
        try:
            return await _workspace_symbols(ls, params.query)
        except Exception:  # noqa: BLE001 - as _guard does, for a coroutine
            ls.window_log_message(t.LogMessageParams(
                t.MessageType.Error, f"netdsl lsp: workspace_symbol failed\n{traceback.format_exc()}"))
            return None

    @ls.feature(t.TEXT_DOCUMENT_CODE_ACTION, t.CodeActionOptions(code_action_kinds=[t.CodeActionKind.QuickFix]))
    @_guard()
    def code_action(ls: NetdslServer, params: t.CodeActionParams):
        uri = params.text_document.uri
        doc = ls.docs.get(uri)
        return _actions(ls, uri, doc, params.range) if doc is not None else None

    @ls.feature(t.TEXT_DOCUMENT_REFERENCES)
    @_guard()
    def references(ls: NetdslServer, params: t.ReferenceParams):
        found = _thing(ls, params.text_document.uri, params.position)
        if found is None:
            return None
        thing, now = found
        spans = thing.spans[1:] if thing.defined and not params.context.include_declaration else thing.spans
        here = [t.Location(now.uri, _exact(s, now.lines, now.position_codec)) for s in spans]
        if thing.origin is not None and params.context.include_declaration:
            return [_location(thing.origin, now.uri, ls)] + here
        return here

    @ls.feature(t.TEXT_DOCUMENT_DOCUMENT_HIGHLIGHT)
    @_guard()
    def document_highlight(ls: NetdslServer, params: t.DocumentHighlightParams):
        found = _thing(ls, params.text_document.uri, params.position)
        if found is None:
            return None
        thing, now = found
        return [t.DocumentHighlight(_exact(s, now.lines, now.position_codec),
                                    t.DocumentHighlightKind.Write if thing.defined and i == 0
                                    else t.DocumentHighlightKind.Read)
                for i, s in enumerate(thing.spans)]

    @ls.feature(t.TEXT_DOCUMENT_PREPARE_RENAME)
    @_guard()
    def prepare_rename(ls: NetdslServer, params: t.PrepareRenameParams):
        found = _named(ls, params.text_document.uri, params.position)
        if found is None:
            return None
        module, now, line, column, doc = found
        try:
            thing, here = refs.renamable(module, now.source, doc.filename, line, column, _protected(ls),
                                         _imported(doc, now.source))
        except refs.Refused as e:
            raise _Refused(str(e)) from None
        return t.PrepareRenamePlaceholder(_exact(here, now.lines, now.position_codec), thing.name)

    @ls.feature(t.TEXT_DOCUMENT_RENAME, t.RenameOptions(prepare_provider=True))
    @_guard()
    def rename(ls: NetdslServer, params: t.RenameParams):
        found = _named(ls, params.text_document.uri, params.position)
        if found is None:
            raise _Refused("the file does not parse: rename waits until it does")
        module, now, line, column, doc = found
        try:
            edits = refs.rename(module, now.source, doc.filename, line, column, params.new_name, _protected(ls),
                                _imported(doc, now.source))
        except refs.Refused as e:
            raise _Refused(str(e)) from None
        thing = refs.at(module, now.source, line, column)
        at_stake = refs.keys_at_stake(thing, doc.filename) if thing is not None else None
        if at_stake is None:
            changes = {now.uri: [t.TextEdit(_exact(s, now.lines, now.position_codec), text) for s, text in edits]}
            tops = {(i.span.line, i.span.column) for i in module.items}  # spans compare equal, whatever they are
            if thing is not None and thing.kind in ("block", "network", "let") and \
                    (thing.spans[0].line, thing.spans[0].column) in tops:
                changes.update(_in_importers(ls, now.uri, doc, thing.name, params.new_name))
            return t.WorkspaceEdit(changes=changes)
        # The client asks the user first: the edit is annotated as needing confirmation.
        return t.WorkspaceEdit(
            document_changes=[t.TextDocumentEdit(t.OptionalVersionedTextDocumentIdentifier(now.uri, now.version), [
                t.AnnotatedTextEdit(annotation_id="state_dict", range=_exact(s, now.lines, now.position_codec),
                                    new_text=text)
                for s, text in edits])],
            change_annotations={"state_dict": t.ChangeAnnotation(
                "changes state_dict keys of a reference spec", needs_confirmation=True,
                description=at_stake + ": weights saved from it, or from the reference, no longer load")})

    @ls.feature(t.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL, t.SemanticTokensLegend(
        token_types=list(tokens.TYPES), token_modifiers=list(tokens.MODIFIERS)))
    @_guard()
    def semantic_tokens(ls: NetdslServer, params: t.SemanticTokensParams):
        uri = params.text_document.uri
        doc = ls.docs.get(uri)
        now = ls.workspace.get_text_document(uri)
        if doc is None or ide._too_big(now.source, Limits()):
            return t.SemanticTokens(data=[])
        lines, codec = now.lines, now.position_codec

        def units(line: int, column: int, length: int) -> tuple[int, int]:
            text = lines[line - 1]
            start = codec.position_to_client_units(lines, t.Position(line - 1, column - 1)).character
            return start, codec.client_num_units(text[column - 1:column - 1 + length])

        found = tokens.tokens(now.source, ide.parse_or_none(now.source, doc.filename))
        return t.SemanticTokens(data=tokens.encode(found, units))

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
