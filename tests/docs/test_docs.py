"""The docs stay true to the code: every layer, function and scheme is
documented, the README's spec and error output are what netdsl does, and every
command and Python example of README.md and docs/ runs as shown (the convention
that marks what runs is in tests/doc_blocks.py)."""

import re
import subprocess
import sys
from pathlib import Path

import doc_blocks
import pytest

import netdsl
from netdsl.check.evaluate import BUILTINS, INIT_SCHEMES
from netdsl.layers import LAYERS, REQUIRED

ROOT = Path(__file__).resolve().parents[2]
LANGUAGE = (ROOT / "docs" / "language.md").read_text()
README = (ROOT / "README.md").read_text()


def _show(v):
    return {True: "true", False: "false", None: "none"}.get(v, f'"{v}"' if isinstance(v, str) else repr(v)) \
        if isinstance(v, (bool, type(None), str)) else repr(v)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_every_layer_and_its_arguments_are_documented(kind):
    sig = LAYERS[kind]
    assert f"`{kind}" in LANGUAGE or f", `{kind}`" in LANGUAGE, kind
    for a in sig.args:
        written = a.name if a.default is REQUIRED else f"{a.name} = {_show(a.default)}"
        assert written in LANGUAGE, (kind, written)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_function_is_documented(name):
    assert f"`{name}(" in LANGUAGE


@pytest.mark.parametrize("name", sorted(INIT_SCHEMES))
def test_every_init_scheme_is_documented(name):
    assert f"`{name}" in LANGUAGE


def test_limits_table_lists_every_limit():
    for name in netdsl.Limits.names():
        assert f"`{name}`" in LANGUAGE


def _readme_spec():
    return README.split("Save this as `mynet.net`:\n\n<!-- file: mynet.net -->\n```netdsl\n")[1].split("```")[0]


def test_readme_first_spec_builds_as_described(tmp_path):
    spec = tmp_path / "mynet.net"
    spec.write_text(_readme_spec())
    model = netdsl.build(str(spec), width=32)
    assert tuple(model.stage2[0].downsample[0].weight.shape) == (64, 32, 1, 1)


@pytest.mark.slow
def test_readme_error_example_is_what_netdsl_prints(tmp_path):
    bad = re.sub(r"\} shortcut downsample.*?\n        batchnorm2d\n    \}", "}", _readme_spec(), flags=re.S)
    (tmp_path / "mynet.net").write_text(bad)
    r = subprocess.run([sys.executable, "-m", "netdsl", "check", "mynet.net"], cwd=tmp_path,
                       capture_output=True, text=True)
    expected = README.split("and `netdsl check mynet.net` says:\n\n```text\n")[1].split("```")[0]
    assert r.returncode == 1
    assert r.stderr.strip() == expected.strip()


def test_the_readmes_map_of_the_package_names_its_folders():
    # It once named a layers.py that had become the folder layers/.
    text = " ".join(README.split("The folders of `netdsl/` are the pipeline")[1].split("\n\n")[0].split())
    named = re.findall(r"`(\w+)/`", text)
    packages = {p.parent.name for p in (ROOT / "netdsl").glob("*/__init__.py")}
    assert not re.search(r"`\w+\.py`", text), "the map names folders, not modules"
    assert len(named) == len(set(named)) and set(named) == packages, (named, packages)


def test_readme_gives_the_two_setup_commands():
    assert "pip install -e . && .venv/bin/netdsl build specs/vgg16.net" in README
    # CI runs the README's test command, word for word.
    command = re.search(r"^python3 -m venv \.venv && \.venv/bin/pip install -e '\.\[test,onnx\]' && .*$", README,
                        flags=re.M).group(0)
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci.splitlines()


def test_language_examples_that_are_whole_specs_compile(tmp_path):
    blocks = re.findall(r"```netdsl\n(.*?)```", LANGUAGE, flags=re.S)
    whole = [b for b in blocks if "network " in b and "input [" in b and "..." not in b]
    assert whole
    for text in whole:
        # The modules of the example's own externs (the language reference's are timm's).
        netdsl.compile(text, grant=re.findall(r'^extern \w+ = "([\w.]+)\.\w+"$', text, flags=re.M))
    fragments = [b for b in blocks if b.lstrip().startswith(("residual", "concat", "dense", "gate"))
                 and "..." not in b]
    assert fragments
    for text in fragments:
        netdsl.parse("block b(c = 4, planes = 4, stride = 1, out = 4, squeeze = 2, num_layers = 2, "
                     "growth_rate = 2, bn_size = 2) {\n" + text + "\n}")


def _number(text):
    return 2**63 - 1 if text == "2⁶³ − 1" else int(text.replace(",", ""))


def test_the_keyword_list_is_the_grammars():
    from netdsl.syntax.parser import _lark

    words = {t.pattern.value for t in _lark().terminals
             if t.pattern.type == "str" and re.fullmatch(r"[a-z_]+", t.pattern.value)}
    words |= set(re.findall(r'"(and|or|not)"', (ROOT / "netdsl" / "syntax" / "grammar.lark").read_text()))
    listed = re.search(r"- \*\*Keywords\*\*: `([^`]*)`", LANGUAGE)
    assert listed is not None and sorted(listed.group(1).split()) == sorted(words)


def test_limits_table_gives_each_default_and_cap():
    from netdsl.limits import CAPS, INT64_MAX

    row = r"^\| `(\w+)` — .*? \| ([\d,]+|2⁶³ − 1) \| ([\d,]+|2⁶³ − 1) \| (?:E\d{4}|\(usage error\)) \|$"
    rows = {name: (default, cap) for name, default, cap in re.findall(row, LANGUAGE, flags=re.M)}
    defaults = netdsl.Limits()
    assert set(rows) == set(netdsl.Limits.names())
    for name, (default, cap) in rows.items():
        assert _number(default) == getattr(defaults, name), name
        assert _number(cap) == CAPS.get(name, (INT64_MAX,))[0], name


def test_the_prose_gives_the_same_defaults_as_the_code():
    # The file size and parameter limits are quoted in words in three places.
    robustness = (ROOT / "docs" / "robustness.md").read_text()
    errors = (ROOT / "docs" / "errors.md").read_text()
    limits = netdsl.Limits()
    size = f"{limits.max_file_bytes // 1000} kB"
    params = f"{limits.max_params // 10**9} billion"
    assert f"`max_file_bytes` ({size})" in robustness and f"`max_file_bytes` ({size} by default)" in errors
    assert f"`max_params` ({params} parameters" in robustness and f"`max_params` ({params}," in errors
    for text in (robustness, errors):  # what they said before they agreed
        assert not re.search(r"(?<![\d.])2 MB|(?<!\d)20 billion", text)


ALL_BLOCKS = [b for page in doc_blocks.pages() for b in doc_blocks.blocks(page)]


def test_every_block_says_what_it_is():
    for b in ALL_BLOCKS:
        assert b.language in doc_blocks.RUN | doc_blocks.SHOWN, \
            f"{b.where}: name the block's language (```sh, ```text, ...; see tests/doc_blocks.py)"
        assert b.flags <= doc_blocks.FLAGS, f"{b.where}: unknown marks {b.flags - doc_blocks.FLAGS}"
        assert not b.flags or b.language in doc_blocks.RUN, f"{b.where}: no-run on a block that never runs"
        assert b.file is None or b.language == "netdsl", f"{b.where}: only spec text is saved as a file"
        assert b.reason is None or "no-run" in b.flags, f"{b.where}: a reason not to run a block that runs"
    # Each kind of block this test knows is in the docs, so none of these checks is vacuous.
    assert {b.language for b in ALL_BLOCKS if b.runs} == doc_blocks.RUN
    assert any(not b.runs and b.language in doc_blocks.RUN for b in ALL_BLOCKS)


def test_every_block_that_is_not_run_says_why():
    unexplained = [b.where for b in ALL_BLOCKS if "no-run" in b.flags and not b.reason]
    assert not unexplained, "say why each is not run, on the line before it: " \
        f"<!-- no-run: it installs packages --> ({unexplained})"
    assert sum("no-run" in b.flags for b in ALL_BLOCKS) > 10


def test_a_reason_not_to_run_is_read_from_the_line_before_the_block(tmp_path):
    page = tmp_path / ("page" + ".md")  # not a name the docs cite (that test reads this file)
    page.write_text("<!-- no-run: it installs packages -->\n```sh no-run\npip install x\n```\n\n"
                    "```sh no-run\npip install y\n```\n")
    first, second = doc_blocks.blocks(page)
    assert (first.reason, second.reason) == ("it installs packages", None)


def test_the_error_catalogues_console_blocks_are_its_generated_examples():
    # docs/errors.md is not run here: its console blocks are recorded output, regenerated
    # and compared by tests/check/test_diagnostics.py. That holds only inside the example markers.
    text = (ROOT / "docs" / "errors.md").read_text()
    outside = re.sub(r"<!-- example: .*? -->.*?<!-- end example -->", "", text, flags=re.S)
    assert "```" not in outside
    assert text.count("```console") == text.count("<!-- example: ") > 50


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.runs], ids=lambda b: b.where)
def test_every_example_runs_as_shown(block, tmp_path):
    doc_blocks.run(block, tmp_path)


def test_every_python_example_can_be_pasted_into_the_prompt():
    # The tutorial's training loop once ran as a script but not when pasted: no blank
    # line after its `with` block.
    python = [b for b in ALL_BLOCKS if b.language == "python"]
    assert any(b.page.name == "tutorial.md" for b in python)
    failed = {b.where: errors for b in python if (errors := doc_blocks.pasted(b))}
    assert not failed, f"add a blank line after each indented block: {failed}"


def _untracked() -> set[str]:
    r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    return {line[3:] for line in r.stdout.splitlines() if line.startswith("?? ")}


@pytest.mark.slow
def test_the_tutorial_runs_in_a_folder_of_its_own(tmp_path):
    # As a reader follows it: every block in order, in one empty folder outside the
    # repository. It once left seven files in the repository's root.
    page = ROOT / "docs" / "tutorial.md"
    assert page.name in doc_blocks.OUTSIDE
    before = _untracked()
    cwd, env = doc_blocks.workspace(tmp_path, page)
    assert ROOT.resolve() not in cwd.resolve().parents and cwd.resolve() != ROOT.resolve()
    assert {p.name for p in cwd.iterdir()} == {b.file for b in doc_blocks.blocks(page) if b.file}
    runs = [b for b in doc_blocks.blocks(page) if b.runs]
    assert len(runs) > 5
    for block in runs:
        doc_blocks.run_in(block, cwd, env)
    assert {"tiny.net", "tiny.pt", "reference.py", "tiny_model.py"} <= {p.name for p in cwd.iterdir()}
    assert _untracked() == before, f"the tutorial wrote into the repository: {_untracked() - before}"


def test_the_docs_say_where_they_start_how_the_command_is_reached():
    setup = README.split("## Set up and try it")[1].split("\n## ")[0]
    cli = (ROOT / "docs" / "cli.md").read_text().split("\n## ")[0]
    for text in (setup, cli):
        assert ". .venv/bin/activate" in text and ".venv/bin/netdsl" in text
    # After that, the pages write commands as an activated environment runs them.
    for b in ALL_BLOCKS:
        if b.runs:
            assert ".venv/bin/" not in b.text, b.where


@pytest.mark.parametrize("expected, actual, same", [
    (["a", "...", "d"], ["a", "b", "c", "d"], True),
    (["a", "...", "d"], ["a", "d"], True),
    (["a", "...", "d"], ["a", "b", "c"], False),
    (["a", "b"], ["a", "b", "c"], False),
    (["a", "b"], ["a", "x"], False),
])
def test_console_output_matching(expected, actual, same):
    assert doc_blocks.matches(expected, actual) is same


def test_a_stated_value_that_is_wrong_fails(tmp_path):
    block = doc_blocks.Block(ROOT / "README.md", 1, "python", set(), "x = 2\nx * 3  # 5\nx, 1  # 2, 1\n", None)
    with pytest.raises(AssertionError, match="the docs say 5, it is 6"):
        doc_blocks.run_python(block, tmp_path)
    block.text = "x = 2\nx * 3  # 6\nx, 1  # 2, 1\n"
    doc_blocks.run_python(block, tmp_path)


def test_console_output_that_differs_fails(tmp_path):
    block = doc_blocks.Block(ROOT / "README.md", 1, "console", set(), "$ netdsl --version\nnetdsl 9.9\n", None)
    cwd, env = doc_blocks.workspace(tmp_path, ROOT / "README.md")
    with pytest.raises(AssertionError, match="netdsl 0.1.0"):
        doc_blocks.run_console(block, cwd, env)


def test_the_json_example_is_what_build_prints(capsys):
    # Shown abridged (one layer, then `...`), so compared here rather than run as a console block.
    import json

    from netdsl.cli import main

    cli = (ROOT / "docs" / "cli.md").read_text()
    assert "here of `netdsl build specs/lenet5.net --format json`:" in cli
    example = json.loads(cli.split("```json\n{\"network\"")[1].split("```")[0]
                         .replace(", ...]", "]").join(['{"network"', ""]))
    assert main(["build", str(ROOT / "specs" / "lenet5.net"), "--format", "json"]) == 0
    real = json.loads(capsys.readouterr().out)
    assert len(real["layers"]) > len(example["layers"]) == 1
    real["layers"] = real["layers"][:1]
    assert example == real


def _ms(number: str, unit: str) -> float:
    return float(number) * (1000 if unit == "s" else 1)


def test_the_time_a_check_takes_is_the_measured_one():
    # cli.md once said "milliseconds" for a `check` that takes a quarter to half a second
    # as a command, cold. Its figures are benchmarks.md's, and the command that measures them.
    cli = (ROOT / "docs" / "cli.md").read_text()
    bench = (ROOT / "docs" / "benchmarks.md").read_text()
    section = cli.split("## `netdsl check SPEC`\n")[1].split("\n## ")[0]
    assert "**How long it takes.**" in section, "cli.md: say how long `netdsl check` takes"
    timing = " ".join(section.split("**How long it takes.**")[1].split("\n\n")[0].split())
    miss = re.search(r"First check of a file \(a miss\): ([\d.]+) ms", bench).group(1)
    hit = re.search(r"repeated check \(result cache hit\): ([\d.]+) ms", bench).group(1)
    first, repeated = timing.split("A first check of a file")[1].split("a repeated check")
    assert f"({miss} ms for resnet50)" in first and f"({hit} ms idle" in repeated
    times = [_ms(n, u) for n, u in re.findall(r"([\d.]+)(?:–[\d.]+)? (ms|s)\b", first)]
    assert times and min(times) >= 100 and "milliseconds" not in first, first  # imports, not ms
    assert "`python bench/cold.py`" in timing


def test_every_markdown_file_cited_is_in_the_repository():
    # The docs, tests and bench once cited a page of reference figures kept outside the repository.
    present = {p.name for p in ROOT.rglob("*.md") if ".git" not in p.parts}
    tests = [p for p in (ROOT / "tests").rglob("*.py") if "fixtures" not in p.parts]
    sources = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *tests,
               *(ROOT / "bench").glob("*.py"), *(ROOT / "netdsl").glob("*.py"), *(ROOT / "netdsl").glob("*.md")]
    cited = set()
    for path in sources:
        text = re.sub(r"--out \S+", "", path.read_text(encoding="utf-8"))  # a file a command writes
        cited |= {Path(m).name for m in re.findall(r"[\w./-]+\.md\b", text)}
    assert "specs.md" in cited
    assert cited <= present, cited - present


# ---------------------------------------------------------------- links and words

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _anchors(path: Path) -> set[str]:
    """The anchors a page has, as GitHub makes them from its headings (lower case,
    punctuation dropped, spaces to hyphens, -1, -2 ... for repeats), and its own ids."""
    text = doc_blocks.prose(path.read_text(encoding="utf-8"))
    out: set[str] = set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    seen: dict[str, int] = {}
    for m in re.finditer(r"^#{1,6}\s+(.*?)\s*$", text, re.M):
        slug = doc_blocks.slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(text: str):
    """(file, anchor) of each Markdown link with an anchor; file '' for the page itself."""
    return re.findall(r"\]\(([^)\s#]*)#([^)\s]+)\)", doc_blocks.prose(text))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_anchor_link_reaches_a_heading(page):
    broken = []
    for file, anchor in _links(page.read_text(encoding="utf-8")):
        target = (page.parent / file).resolve() if file else page
        if target.suffix == ".md" and target.is_file() and anchor not in _anchors(target):
            broken.append(f"{file}#{anchor}")
    assert not broken, f"{page.name}: links to anchors no heading makes: {broken}"


def test_a_link_to_a_missing_anchor_is_found(tmp_path):
    page = tmp_path / ("page" + ".md")  # not a name the docs cite (that test reads this file)
    page.write_text("# Title\n\n## Sweeps (target: 500/s) — **met**\n\n```\n# not a heading\n```\n")
    assert _anchors(page) == {"title", "sweeps-target-500s--met"}
    assert _links(f"see [x]({page.name}#sweeps) and [y](#title)") == [(page.name, "sweeps"), ("", "title")]


# Words about how the project is developed, not about the software: a user's page says
# what holds ("these figures are CPU-only"), not which work item or session did what.
INTERNAL = re.compile(r"\b[Ii]ssues? ?#?\d+|\bsessions?\b|\bno GPU was lent\b|\bstop \d+\b")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_names_internal_work_items(page):
    found = [m.group(0) for m in INTERNAL.finditer(doc_blocks.prose(page.read_text(encoding="utf-8")))]
    assert not found, f"{page.name} speaks of the project's work, not the software: {found}"
