"""`netdsl explain`: the catalogue rendered for a terminal, and the list of codes."""

import re
import subprocess
import sys

import pytest

from netdsl.codes import entries, explain, render, titles


def explain_cli(*args):
    return subprocess.run([sys.executable, "-m", "netdsl", "explain", *args], capture_output=True,
                          text=True, env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"})


def test_explain_prints_the_entry_as_plain_text():
    r = explain_cli("E0301")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "E0301: residual add needs equal shapes" and lines[1] == ""
    assert "    error[E0301]: residual add needs equal shapes" in lines  # code indented
    assert any(line.startswith("Fix: ") for line in lines)
    for markdown in ("##", "```", "**", "<!--"):
        assert markdown not in r.stdout, markdown


@pytest.mark.parametrize("code", sorted(entries()))
def test_every_entry_renders_without_markdown_and_keeps_its_words(code):
    text = render(explain(code), width=80)
    prose = [line for line in text.splitlines() if not line.startswith("    ")]
    assert prose[0] == f"{code}: {titles()[code]}"
    for line in prose:
        assert len(line) <= 80 or re.fullmatch(r"\S*`[^`]+`\S*", line), line  # unless one code span
        outside_code = re.sub(r"`[^`]*`", "", line)
        assert not re.match(r"#|```|\|", line) and "**" not in outside_code, line
    # Nothing is lost: every word of the Markdown is in the text, marks aside.
    def words(s):
        return re.findall(r"[A-Za-z0-9]+", s)

    markdown = re.sub(r"^```.*$", "", explain(code), flags=re.M)  # a fence's language is no word
    assert words(text) == words(markdown)


def test_code_blocks_are_indented_verbatim():
    md = "## E0001: t\n\n```console\n$ netdsl check x.net\n  |  ^^ here\n```\n"
    assert render(md).splitlines()[2:] == ["    $ netdsl check x.net", "      |  ^^ here"]


def test_lists_tables_links_and_emphasis_are_rendered():
    md = ("## E0001: t\n\nSee [the docs](docs/errors.md) and *this*; `a * b` stays.\n\n"
          "- one item that is long enough to wrap around\n- two\n\n| a | bb |\n|---|---|\n| ccc | d |\n")
    assert render(md, width=30).splitlines()[2:] == [
        "See the docs (docs/errors.md)", "and this; `a * b` stays.", "",
        "- one item that is long enough", "  to wrap around", "- two", "",
        "  a    bb", "  ccc  d"]


def test_a_code_span_is_not_broken_across_lines():
    text = render("## E0001: t\n\nUse `conv2d(64, 1, bias = false)` here.\n", width=20)
    assert "    `conv2d(64, 1, bias = false)`" not in text
    assert "`conv2d(64, 1, bias = false)`" in text.splitlines()


def test_explain_without_a_code_lists_every_code_with_its_title():
    r = explain_cli()
    assert r.returncode == 0, r.stderr
    listed = dict(re.findall(r"^(E\d{4})  (.+)$", r.stdout, flags=re.M))
    assert listed == titles() and set(listed) == set(entries())
    assert listed["E0301"] == "residual add needs equal shapes"
    assert "netdsl explain CODE" in r.stdout


def test_an_unknown_code_points_at_the_list():
    r = explain_cli("E0999")
    assert r.returncode == 2 and "unknown error code 'E0999'" in r.stderr and "netdsl explain lists" in r.stderr


# The first lines of an example in netdsl/errors.md tell tests/errors_doc.py what it must give.
_TEST_HEADER = re.compile(r"^\s*# (expect|limit|set|export): ", re.M)


def _example_and_output(markdown):
    """The example spec's lines and its console output, as the entry shows them."""
    spec = re.search(r"^```netdsl\n(.*?)^```", markdown, re.M | re.S).group(1)
    # A byte that is not UTF-8 is shown as \xNN; the diagnostic quotes it as the file holds it.
    spec = re.sub(rb"\\x([0-9a-f]{2})", lambda b: bytes([int(b.group(1), 16)]), spec.encode("utf-8"))
    spec = spec.decode("utf-8", "replace").splitlines()
    console = re.search(r"^```console\n(.*?)^```", markdown, re.M | re.S).group(1)
    return spec, console


@pytest.mark.parametrize("code", sorted(entries()))
def test_no_entry_shows_the_test_header_and_its_line_numbers_stay_true(code):
    text = render(explain(code), width=80)
    assert not _TEST_HEADER.search(text), code
    # Each line a diagnostic quotes from the example is that line of the example as shown.
    spec, console = _example_and_output(explain(code))
    name = re.match(r"# (\S+\.net)$", spec[0])
    assert name, f"{code}: the example starts with its file's name, not {spec[0]!r}"
    quoted = re.findall(rf"--> {re.escape(name.group(1))}:(\d+):\d+\n(?:.*\n)*?(\d+) \| (.*)", console)
    for at, line, source in quoted:
        if at == line:
            assert spec[int(line) - 1].rstrip() == source.rstrip(), (code, line)


def test_netdsl_explain_prints_no_test_header():
    r = explain_cli("E0306")
    assert r.returncode == 0, r.stderr
    assert "expect:" not in r.stdout
    assert "    # E0306_needs_image.net\n    # A convolution after `flatten`." in r.stdout
    assert "6 |     conv2d(16, 3)" in r.stdout and r.stdout.count("conv2d(16, 3)") == 2
