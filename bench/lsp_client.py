"""A minimal Language Server Protocol client that speaks to ``netdsl lsp`` as an editor
does: a real server process, JSON-RPC with Content-Length framing over its stdin and
stdout, every wait under a deadline, so that a broken server is an exception rather
than a hang. The tests (tests/tools/test_lsp.py) and the fuzzer (fuzz_commands.py) use it.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0  # seconds for one answer; a cold start on a busy CI machine takes a few


class NoAnswer(Exception):
    """The server did not send what was awaited within the deadline, or it exited."""


class ServerError(Exception):
    """The server answered a request with an error."""


class Client:
    """Requests wait for their response; notifications queue; the server's log
    messages (``window/logMessage``) are kept in ``logs``, and its own requests
    (answered with null) in ``asked``."""

    def __init__(self, cwd: Path, root: Path = ROOT):
        """Start the server of the netdsl checkout ``root`` (this one by default) in ``cwd``."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(root)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        self.stderr = open(cwd / "server.stderr", "w+b")  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen([sys.executable, "-m", "netdsl", "lsp"], cwd=cwd, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)
        self.inbox: queue.Queue = queue.Queue()
        self.pending: list[dict] = []
        self.logs: list[dict] = []
        self.asked: list[dict] = []
        self.ids = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        out = self.proc.stdout
        try:
            while True:
                headers = {}
                while True:
                    line = out.readline()
                    if not line:
                        return
                    if not line.strip():
                        break
                    key, _, value = line.decode("ascii").partition(":")
                    headers[key.strip().lower()] = value.strip()
                self.inbox.put(json.loads(out.read(int(headers["content-length"]))))
        finally:
            self.inbox.put(None)

    def _send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        try:
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise NoAnswer(f"the server's input is closed ({e}); stderr:\n{self.log()}") from None

    def notify(self, method: str, params) -> None:
        self._send({"method": method, "params": params})

    def ask(self, method: str, params) -> int:
        """Send a request without waiting for the answer; its id, to ``wait`` for."""
        self.ids += 1
        self._send({"id": self.ids, "method": method, "params": params})
        return self.ids

    def request(self, method: str, params, timeout: float = TIMEOUT):
        me = self.ask(method, params)
        reply = self.wait(lambda m: m.get("id") == me and "method" not in m, f"the answer to {method}", timeout)
        if "error" in reply:
            raise ServerError(reply["error"])
        return reply["result"]

    def wait(self, wanted, what: str, timeout: float = TIMEOUT) -> dict:
        for m in self.pending:
            if wanted(m):
                self.pending.remove(m)
                return m
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoAnswer(f"no {what} within {timeout} s; server stderr:\n{self.log()}")
            try:
                m = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            if m is None:
                self.inbox.put(None)  # every later wait sees the end too
                raise NoAnswer(f"the server closed its output waiting for {what}; stderr:\n{self.log()}")
            if m.get("method") == "window/logMessage":
                self.logs.append(m["params"])
            if "method" in m and "id" in m:  # a request of the server's own: answer it
                self.asked.append(m)
                self._send({"id": m["id"], "result": None})
            elif wanted(m):
                return m
            else:
                self.pending.append(m)

    def diagnostics(self, uri: str, version: int | None, timeout: float = TIMEOUT) -> list[dict]:
        m = self.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                      and m["params"]["uri"] == uri and m["params"].get("version") == version,
                      f"diagnostics for {uri} version {version}", timeout)
        return m["params"]["diagnostics"]

    def open(self, path: Path, text: str | None = None, version: int = 1) -> str:
        uri = path.resolve().as_uri()
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "netdsl", "version": version,
            "text": path.read_text() if text is None else text}})
        return uri

    def change(self, uri: str, text: str, version: int) -> None:
        self.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                               "contentChanges": [{"text": text}]})

    def at(self, method: str, uri: str, line: int, character: int, timeout: float = TIMEOUT):
        return self.request(method, {"textDocument": {"uri": uri},
                                     "position": {"line": line, "character": character}}, timeout)

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")[-4000:]

    def close(self) -> int:
        """Ask the server to shut down and exit; kill it if it does not. Its exit status."""
        try:
            if self.proc.poll() is None:
                try:
                    self.request("shutdown", None)
                    self.notify("exit", None)
                    return self.proc.wait(timeout=TIMEOUT)
                except (NoAnswer, ServerError, subprocess.TimeoutExpired):
                    self.proc.kill()
            return self.proc.wait()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.stderr.close()
