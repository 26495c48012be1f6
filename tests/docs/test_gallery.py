"""docs/gallery.md is what docs/gallery.py writes, and every diagram in the docs is
what `netdsl graph` prints."""

import importlib.util
import re
import shlex
from pathlib import Path

import doc_blocks
import pytest
from mermaid import parse_mermaid

from netdsl.cli import main

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "gallery.md"


def _gallery():
    spec = importlib.util.spec_from_file_location("gallery", ROOT / "docs" / "gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered():
    return _gallery().render()


@pytest.mark.slow
def test_the_committed_gallery_is_the_scripts_output(rendered):
    assert PAGE.read_text(encoding="utf-8") == rendered, \
        "docs/gallery.md is out of date: run python docs/gallery.py"


def test_the_gallery_shows_every_shipped_spec():
    text = PAGE.read_text(encoding="utf-8")
    for path in (ROOT / "specs").glob("*.net"):
        assert f"`specs/{path.name}`" in text, path.name
    for block in re.findall(r"```mermaid\n(.*?)```", text, flags=re.S):
        parse_mermaid(block.rstrip("\n"))


def test_the_gallery_check_mode_fails_when_the_page_is_stale(tmp_path, monkeypatch, rendered):
    gallery = _gallery()
    monkeypatch.setattr(gallery, "render", lambda: rendered)
    stale = tmp_path / "gallery.md"
    stale.write_text(rendered.replace("| 25,557,032 |", "| 25,557,033 |"))
    monkeypatch.setattr(gallery, "PAGE", stale)
    assert gallery.main(["gallery.py", "--check"]) == 1
    assert gallery.main(["gallery.py"]) == 0 and stale.read_text() == rendered
    assert gallery.main(["gallery.py", "--check"]) == 0


_MARKED = re.compile(r"^<!-- (netdsl graph [^>]*?) -->\n```mermaid\n(.*?)```$", re.M | re.S)
MARKED = [(page, m.group(1), m.group(2)) for page in doc_blocks.pages()
          for m in _MARKED.finditer(page.read_text(encoding="utf-8"))]


def test_the_docs_show_the_diagrams_of_resnet50_and_inception_v3():
    commands = {cmd for _, cmd, _ in MARKED}
    assert "netdsl graph specs/resnet50.net --depth 2" in commands
    assert any(c.startswith("netdsl graph specs/inception_v3.net") for c in commands)
    # Every mermaid block of the docs (the gallery aside) says where it comes from.
    for page in doc_blocks.pages():
        if page.name != "gallery.md":
            n = sum(b.language == "mermaid" for b in doc_blocks.blocks(page))
            assert n == sum(p == page for p, _, _ in MARKED), page.name


@pytest.mark.parametrize("page, command, block", MARKED, ids=[c for _, c, _ in MARKED])
def test_a_diagram_in_the_docs_is_what_the_command_prints(page, command, block, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # where the docs' commands run; they read only shipped specs
    assert main(shlex.split(command)[1:]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == block, f"{page.name}: the diagram under `{command}` is out of date"
