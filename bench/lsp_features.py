"""How long the language server takes to answer each request an editor sends, over
every shipped spec, through the real server.

    python bench/lsp_features.py                  # specs/*.net
    python bench/lsp_features.py --specs 'specs/inception*.net' --rounds 5

It starts ``netdsl lsp`` (bench/lsp_client.py), opens each spec, waits for its
diagnostics, then sends each request ``--rounds`` times: inlay hints, the outline,
semantic tokens and code actions over the whole document, and at every tenth
name (a word of the text) references, prepareRename, signature help, completion
and hover; and workspace symbols over the folder (the first query reads every
file; the later ones are reported apart). It prints, per request, the number sent
and the p50, p90 and largest answer times, and the server's peak memory.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lsp_client import Client, ServerError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--specs", default=str(ROOT / "specs" / "*.net"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    paths = sorted(Path(p) for p in glob.glob(args.specs))
    times: dict[str, list[float]] = {}

    def timed(name: str, method: str, params) -> None:
        start = time.perf_counter()
        try:
            client.request(method, params)
        except ServerError as e:
            if e.args[0].get("code") != -32803:  # a refused rename is an answer
                raise
        times.setdefault(name, []).append(time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as scratch:
        client = Client(Path(scratch))
        try:
            folder = paths[0].parent.resolve() if paths else ROOT
            client.request("initialize", {"processId": os.getpid(), "rootUri": folder.as_uri(),
                                          "capabilities": {}})
            client.notify("initialized", {})
            timed("workspace/symbol (first)", "workspace/symbol", {"query": "b"})
            for path in paths:
                uri = client.open(path)
                client.diagnostics(uri, 1)
                text = path.read_text(encoding="utf-8")
                lines = text.split("\n")
                doc = {"textDocument": {"uri": uri}}
                whole = {"start": {"line": 0, "character": 0}, "end": {"line": len(lines), "character": 0}}
                words = [(n, m.start()) for n, line in enumerate(lines)
                         for m in re.finditer(r"[A-Za-z_]\w*", line.split("#")[0])][::10]
                for _ in range(args.rounds):
                    timed("inlayHint", "textDocument/inlayHint", {**doc, "range": whole})
                    timed("documentSymbol", "textDocument/documentSymbol", doc)
                    timed("semanticTokens/full", "textDocument/semanticTokens/full", doc)
                    timed("codeAction", "textDocument/codeAction",
                          {**doc, "range": whole, "context": {"diagnostics": []}})
                    timed("workspace/symbol", "workspace/symbol", {"query": "b"})
                for line, character in words:
                    at = {**doc, "position": {"line": line, "character": character + 1}}
                    timed("references", "textDocument/references", {**at, "context": {"includeDeclaration": True}})
                    timed("prepareRename", "textDocument/prepareRename", at)
                    timed("signatureHelp", "textDocument/signatureHelp", at)
                    timed("completion", "textDocument/completion", at)
                    timed("hover", "textDocument/hover", at)
                client.notify("textDocument/didClose", doc)
            peak = _peak(client.proc.pid)
        finally:
            client.close()
    print(f"{len(paths)} specs, {args.rounds} rounds; load average {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} CPUs")
    for name, got in times.items():
        ms = sorted(t * 1000 for t in got)
        p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
        print(f"{name:<26} {len(ms):>5}  p50 {statistics.median(ms):7.1f} ms  p90 {p90:7.1f} ms  "
              f"max {ms[-1]:7.1f} ms")
    if peak:
        print(f"server peak memory (VmHWM): {peak}")
    return 0


def _peak(pid: int) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


if __name__ == "__main__":
    sys.exit(main())
