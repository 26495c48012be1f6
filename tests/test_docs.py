"""The docs stay true to the code: every layer, function and scheme is
documented, and the README's spec and error output are what netdsl does."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import netdsl
from netdsl.evaluate import BUILTINS, INIT_SCHEMES
from netdsl.layers import LAYERS, REQUIRED

ROOT = Path(__file__).resolve().parent.parent
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
    return README.split("Save this as `mynet.net`:\n\n```\n")[1].split("```")[0]


def test_readme_first_spec_builds_as_described(tmp_path):
    spec = tmp_path / "mynet.net"
    spec.write_text(_readme_spec())
    model = netdsl.build(str(spec), width=32)
    assert tuple(model.stage2[0].downsample[0].weight.shape) == (64, 32, 1, 1)


def test_readme_error_example_is_what_netdsl_prints(tmp_path):
    bad = re.sub(r"\} shortcut downsample.*?\n        batchnorm2d\n    \}", "}", _readme_spec(), flags=re.S)
    (tmp_path / "mynet.net").write_text(bad)
    r = subprocess.run([sys.executable, "-m", "netdsl", "check", "mynet.net"], cwd=tmp_path,
                       capture_output=True, text=True)
    expected = README.split("and `netdsl check mynet.net` says:\n\n```\n")[1].split("```")[0]
    assert r.returncode == 1
    assert r.stderr.strip() == expected.strip()


def test_readme_gives_the_two_setup_commands():
    assert "pip install -e . && .venv/bin/netdsl build specs/vgg16.net" in README
    assert "pip install -e '.[test]' && .venv/bin/python -m pytest" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest" in ci


def test_language_examples_that_are_whole_specs_compile(tmp_path):
    blocks = re.findall(r"```\n(.*?)```", LANGUAGE, flags=re.S)
    whole = [b for b in blocks if "network " in b and "input [" in b and "..." not in b]
    assert whole
    for text in whole:
        netdsl.compile(text)
    fragments = [b for b in blocks if b.lstrip().startswith(("residual", "concat", "dense", "gate"))
                 and "..." not in b]
    assert fragments
    for text in fragments:
        netdsl.parse("block b(c = 4, planes = 4, stride = 1, out = 4, squeeze = 2, num_layers = 2, "
                     "growth_rate = 2, bn_size = 2) {\n" + text + "\n}")


def _number(text):
    return 2**63 - 1 if text == "2⁶³ − 1" else int(text.replace(",", ""))


def test_limits_table_gives_each_default_and_cap():
    from netdsl.limits import CAPS, INT64_MAX

    row = r"^\| `(\w+)` — .*? \| ([\d,]+|2⁶³ − 1) \| ([\d,]+|2⁶³ − 1) \| E\d{4} \|$"
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
