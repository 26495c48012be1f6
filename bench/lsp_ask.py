"""Ask ``netdsl lsp`` about a spec as an editor does, and print what it answers as an
editor shows it: the transcripts of docs/editors.md, which its tests run.

    python bench/lsp_ask.py hints specs/resnet.net --lines 65-78
    python bench/lsp_ask.py symbols specs/resnet.net
    python bench/lsp_ask.py workspace-symbols specs/resnet.net bottle
    python bench/lsp_ask.py actions spec.net
    python bench/lsp_ask.py references specs/resnet.net --at 26:20
    python bench/lsp_ask.py rename specs/resnet.net --at 26:20 --to channels
    python bench/lsp_ask.py complete spec.net --at 2:50 --top 5
    python bench/lsp_ask.py signature spec.net --at 2:50
    python bench/lsp_ask.py tokens specs/resnet.net --lines 29-29

It starts the server (bench/lsp_client.py), opens the file, waits for its
diagnostics, sends one request and prints the answer: ``hints``, the lines with
their inlay hints written in ``‹ ›``; ``symbols``, the outline, indented as it
nests; ``workspace-symbols QUERY``, one symbol a line; ``actions``, each quick fix
of each diagnostic with the edit it makes; ``references`` and ``rename``, of the
name at ``--at LINE:COLUMN`` (1-based), each place with its line, or why the
rename is refused; ``complete``, the first ``--top`` completions there in the
editor's order, each with its kind and detail; ``signature``, the signature with
the active parameter in ``[ ]``; ``tokens``, each semantic token of the lines
with its type and modifiers. ``--json`` prints the answer as it came.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lsp_client import Client, ServerError  # noqa: E402

COMPLETION_KINDS = {7: "layer", 9: "block", 3: "function", 10: "argument", 12: "value", 6: "variable",
                    5: "label", 14: "keyword"}
SYMBOL_KINDS = {2: "module", 5: "class", 12: "function", 13: "variable", 14: "constant", 8: "field",
                3: "namespace", 9: "constructor"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["hints", "symbols", "workspace-symbols", "actions", "references", "rename",
                                     "complete", "signature", "tokens"])
    ap.add_argument("spec", type=Path)
    ap.add_argument("query", nargs="?", default="")
    ap.add_argument("--lines", help="FIRST-LAST, 1-based (hints: the range asked for; default all)")
    ap.add_argument("--at", help="LINE:COLUMN, 1-based: the name to find or rename")
    ap.add_argument("--to", help="the new name (rename)")
    ap.add_argument("--top", type=int, default=10, help="how many completions to print")
    ap.add_argument("--json", action="store_true", help="print the answer as the server sent it")
    args = ap.parse_args(argv)
    path = args.spec.resolve()
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    first, last = (int(n) for n in args.lines.split("-")) if args.lines else (1, len(lines))
    with tempfile.TemporaryDirectory() as scratch:
        client = Client(Path(scratch))
        try:
            caps = client.request("initialize", {"processId": os.getpid(), "rootUri": path.parent.as_uri(),
                                                 "capabilities": {"general": {"positionEncodings": ["utf-32"]}}})
            legend = caps["capabilities"].get("semanticTokensProvider", {}).get("legend")
            client.notify("initialized", {})
            uri = client.open(path)
            diagnostics = client.diagnostics(uri, 1)
            doc = {"textDocument": {"uri": uri}}
            if args.what == "hints":
                answer = client.request("textDocument/inlayHint", {**doc, "range": {
                    "start": {"line": first - 1, "character": 0}, "end": {"line": last - 1, "character": 0}}})
            elif args.what == "symbols":
                answer = client.request("textDocument/documentSymbol", doc)
            elif args.what == "workspace-symbols":
                answer = client.request("workspace/symbol", {"query": args.query})
            elif args.what == "tokens":
                answer = client.request("textDocument/semanticTokens/full", doc)
            elif args.what in ("complete", "signature"):
                line, column = (int(n) - 1 for n in args.at.split(":"))
                method = "textDocument/completion" if args.what == "complete" else "textDocument/signatureHelp"
                answer = client.at(method, uri, line, column)
            elif args.what in ("references", "rename"):
                line, column = (int(n) - 1 for n in args.at.split(":"))
                where = {**doc, "position": {"line": line, "character": column}}
                try:
                    answer = (client.request("textDocument/references", {**where, "context": {
                        "includeDeclaration": True}}) if args.what == "references" else
                        client.request("textDocument/rename", {**where, "newName": args.to}))
                except ServerError as e:
                    answer = {"refused": e.args[0]["message"]}
            else:
                answer = [(d, client.request("textDocument/codeAction", {**doc, "range": d["range"],
                                                                          "context": {"diagnostics": [d]}}))
                          for d in diagnostics]
        finally:
            client.close()
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    elif args.what == "hints":
        _show_hints(answer, lines, first, last)
    elif args.what == "symbols":
        _show_symbols(answer, 0)
    elif args.what == "workspace-symbols":
        for s in answer:
            start = s["location"]["range"]["start"]
            print(f"{SYMBOL_KINDS.get(s['kind'], s['kind'])} {s['name']}  "
                  f"{Path(s['location']['uri']).name}:{start['line'] + 1}:{start['character'] + 1}")
    elif args.what == "tokens":
        row, start = 0, 0
        data = answer["data"]
        for i in range(0, len(data), 5):
            dl, ds, length, typ, mods = data[i:i + 5]
            row, start = row + dl, (start + ds if dl == 0 else ds)
            if first <= row + 1 <= last:
                names = [m for b, m in enumerate(legend["tokenModifiers"]) if mods >> b & 1]
                word = lines[row][start:start + length]
                print(f"{row + 1}:{start + 1:<4} {word:<12} {' '.join([legend['tokenTypes'][typ], *names])}")
    elif args.what == "complete":
        items = sorted(answer["items"], key=lambda i: i.get("sortText", i["label"]))
        for i in items[:args.top]:
            print(f"{i['label']:<19} {COMPLETION_KINDS.get(i['kind'], i['kind']):<9} {i.get('detail') or ''}".rstrip())
        if len(items) > args.top:
            print(f"… {len(items) - args.top} more")
    elif args.what == "signature":
        if answer is None:
            print("no signature here")
        else:
            sig, active = answer["signatures"][0], answer.get("activeParameter")
            label = sig["label"]
            if active is not None:
                p = sig["parameters"][active]["label"]
                at = label.index(p, label.index("("))
                label = label[:at] + "[" + p + "]" + label[at + len(p):]
            print(label)
    elif isinstance(answer, dict) and "refused" in answer:
        print(f"refused: {answer['refused']}")
    elif args.what == "references":
        for r in answer or []:
            _show_place(r["range"], lines)
    elif args.what == "rename":
        for edits in answer["changes"].values():
            for e in sorted(edits, key=lambda e: (e["range"]["start"]["line"], e["range"]["start"]["character"])):
                _show_place(e["range"], lines, e["newText"])
    else:
        _show_actions(answer, lines)
    return 0


def _show_place(r: dict, lines: list[str], new: str | None = None) -> None:
    line, start, end = r["start"]["line"], r["start"]["character"], r["end"]["character"]
    text = lines[line]
    marked = text[:start] + "[" + (text[start:end] if new is None else new) + "]" + text[end:]
    print(f"{line + 1}:{start + 1}: {marked.strip()}")


def _show_hints(hints: list[dict], lines: list[str], first: int, last: int) -> None:
    at: dict[int, list[dict]] = {}
    for h in hints:
        at.setdefault(h["position"]["line"], []).append(h)
    width = len(str(last))
    for n in range(first - 1, last):
        line = lines[n]
        # From the right, so that the columns of those left to insert hold; at one
        # position, in the order sent.
        for h in reversed(sorted(at.get(n, []), key=lambda h: h["position"]["character"])):
            c = h["position"]["character"]
            line = line[:c] + (" " if h.get("paddingLeft") else "") + f"‹{h['label']}›" + line[c:]
        print(f"{n + 1:>{width}} | {line}".rstrip())


def _show_symbols(symbols: list[dict], depth: int) -> None:
    for s in symbols:
        start = s["range"]["start"]["line"] + 1
        end = s["range"]["end"]["line"] + 1
        detail = f"  {s['detail']}" if s.get("detail") else ""
        lines = f"line {start}" if start == end else f"lines {start}–{end}"
        print(f"{'  ' * depth}{SYMBOL_KINDS.get(s['kind'], s['kind'])} {s['name']}{detail}  ({lines})")
        _show_symbols(s.get("children") or [], depth + 1)


def _show_actions(found: list[tuple[dict, list[dict]]], lines: list[str]) -> None:
    for d, actions in found:
        start = d["range"]["start"]
        print(f"{start['line'] + 1}:{start['character'] + 1}: {d.get('code')} {d['message'].splitlines()[0]}")
        for a in actions or []:
            print(f"  fix: {a['title']}{'  (preferred)' if a.get('isPreferred') else ''}")
            for edits in a["edit"]["changes"].values():
                for e in edits:
                    r = e["range"]
                    old = lines[r["start"]["line"]][r["start"]["character"]:r["end"]["character"]] \
                        if r["start"]["line"] == r["end"]["line"] else "…"
                    print(f"    {r['start']['line'] + 1}:{r['start']['character'] + 1}: "
                          f"{json.dumps(old)} → {json.dumps(e['newText'])}")


if __name__ == "__main__":
    sys.exit(main())
