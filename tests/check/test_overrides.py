"""`--set NAME=VALUE` and `compile(spec, NAME=value)`: override values are
checked like the spec's own, and every error says which parameter it came from."""

import math
import subprocess
import sys

import pytest

import netdsl

SPEC = """network n(width = 16, scale = 1.0, bn = true, depths = [1, 2], num_classes = 10) {
    input [3, 32, 32]
    conv2d(width, 3, padding = 1)
    if bn {
        batchnorm2d
    }
    for d in depths {
        conv2d(width, 3, padding = 1) * d
    }
    adaptive_avgpool2d(1)
    flatten
    linear(num_classes)
}
"""


def error(**overrides):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(SPEC, **overrides)
    return e.value


def test_valid_overrides_work_as_python_values_and_as_expressions():
    net = netdsl.compile(SPEC, width=8, scale=2, bn=False, depths=[1], num_classes="2 * 5")
    assert net.params == {"width": 8, "scale": 2, "bn": False, "depths": [1], "num_classes": 10}


@pytest.mark.parametrize("name, value, found", [
    ("width", 16.0, "found float 16.0"),
    ("width", "16.5", "found float 16.5"),
    ("width", True, "found bool true"),
    ("bn", 1, "found int 1"),
    ("depths", 3, "found int 3"),
    ("scale", "[1]", "found list [1]"),
])
def test_a_value_of_the_wrong_type_names_the_parameter(name, value, found):
    e = error(**{name: value})
    d = e.diagnostics[0]
    assert d.code == "E0206" and d.message.startswith(f"the value given for `{name}`: expected ")
    assert found in d.message and f"`{name} = " in d.help
    assert len(e.diagnostics) == 1  # uses of the bad parameter stay quiet


def test_an_unknown_parameter_is_named_with_a_suggestion():
    d = error(widht=8).diagnostics[0]
    assert d.code == "E0202" and "`widht`" in d.message and "`width`" in d.help


@pytest.mark.parametrize("name, value, code, at", [
    ("width", 0, "E0204", (3, 12)),
    ("width", -16, "E0204", (3, 12)),
    ("num_classes", 0, "E0204", (12, 12)),
    ("width", 10**7, "E0407", (3, 12)),
])
def test_a_value_out_of_range_is_reported_at_its_use_and_names_the_set(name, value, code, at):
    d = error(**{name: value}).diagnostics[0]
    assert d.code == code and (d.span.line, d.span.column) == at
    assert any(n.startswith(f"`{name}` is ") and n.endswith(f"set from outside the spec "
                                                           f"(the value given for `{name}`)")
               for n in d.notes), d.notes


def test_a_value_used_through_a_loop_variable_is_still_reported():
    # The note needs the parameter's name in the source it points at; through `for d in
    # depths` the failing `* d` does not show it, but the error itself is still there.
    d = error(depths="[1, -1]").diagnostics[0]
    assert d.code == "E0204" and (d.span.line, d.span.column) == (8, 41)


def test_an_error_in_an_override_expression_names_the_parameter():
    d = error(width="64 // 0").diagnostics[0]
    assert d.code == "E0211" and d.span.file == "<value of width>"
    assert d.notes == ("in the value given for `width`",)


@pytest.mark.parametrize("value, code", [
    (math.nan, "E0215"), (math.inf, "E0215"), (2**70, "E0215"), (object(), "E0206"),
    ({"a": 1}, "E0206"), (list(range(20000)), "E0403"),
])
def test_python_values_the_language_lacks_are_refused(value, code):
    e = error(scale=value)
    assert e.codes == [code] and e.diagnostics[0].message.startswith("the value given for `scale`: ")


def test_a_deeply_nested_python_list_is_refused():
    deep = [1]
    for _ in range(500):
        deep = [deep]
    assert error(depths=deep).codes == ["E0402"]


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "netdsl", "check", "n.net", *args], cwd=cwd,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_cli_set_errors_name_the_parameter(tmp_path):
    (tmp_path / "n.net").write_text(SPEC)
    assert run("--set", "width=8", cwd=tmp_path).returncode == 0

    r = run("--set", "num_classes=0", cwd=tmp_path)
    assert r.returncode == 1 and "error[E0204]" in r.stderr
    assert "= note: `num_classes` is 0, set from outside the spec (--set num_classes=...)" in r.stderr

    r = run("--set", "width=(", cwd=tmp_path)
    assert r.returncode == 1 and "error[E0004]" in r.stderr and "= note: in --set width=(" in r.stderr

    r = run("--set", "width=2.5", cwd=tmp_path)
    assert r.returncode == 1 and "error[E0206]: --set width: expected int" in r.stderr

    for bad in ("width", "=3", "width=3 --set width=4"):
        r = run(*[a for part in bad.split(" --set ") for a in ("--set", part)], cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.startswith("netdsl: error: --set"), bad
    assert all("Traceback" not in x for x in (r.stderr, r.stdout))


# Messages name a value the way it was given: `--set NAME=...` on the command line,
# "the value given for `NAME`" through the API.

def cli_error(tmp_path, capsys, *sets):
    from netdsl.cli import main

    spec = tmp_path / "n.net"
    spec.write_text(SPEC)
    assert main(["check", str(spec), *[a for s in sets for a in ("--set", s)]]) == 1
    return capsys.readouterr().err


def test_wrong_type_wording_follows_the_origin(tmp_path, capsys):
    assert "error[E0206]: --set width: expected int like the default 16, found float 2.5" in \
        cli_error(tmp_path, capsys, "width=2.5")
    assert str(error(width=2.5)).startswith(
        "error[E0206]: the value given for `width`: expected int like the default 16, found float 2.5")


def test_range_note_wording_follows_the_origin(tmp_path, capsys):
    assert "= note: `width` is 0, set from outside the spec (--set width=...)" in \
        cli_error(tmp_path, capsys, "width=0")
    assert "= note: `width` is 0, set from outside the spec (the value given for `width`)" in \
        str(error(width=0))


def test_a_missing_value_is_asked_for_the_way_values_are_given(tmp_path, capsys):
    from netdsl.cli import main

    spec = tmp_path / "n.net"
    spec.write_text("network n(c) { input [4]\n linear(c) }")
    assert main(["check", str(spec)]) == 1
    assert "help: give it a default, or set it: --set c=VALUE" in capsys.readouterr().err
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec)
    assert e.value.diagnostics[0].help == "give it a default, or set it: c=VALUE"


@pytest.mark.parametrize("text, code", [("64 //", "E0004"), ("row x", "E0001"), ('"open', "E0003")])
def test_a_string_that_is_not_an_expression_is_an_error(text, code):
    # It used to become the string itself, silently.
    e = error(width=text)
    d = e.diagnostics[0]
    assert e.codes == [code] and d.span.file == "<value of width>"
    assert d.notes == ("in the value given for `width`",)
    assert "1 | " + text in str(e)  # the value is shown like a line of the spec


def test_a_string_value_is_written_in_quotes():
    spec = 'network n(mode = "row") { input [3, 8, 8]\n stochastic_depth(0.1, mode) }'
    assert netdsl.compile(spec, mode='"batch"').body[0].mode == "batch"
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec, mode="batch")
    assert e.value.codes == ["E0101"]
    assert "a string is written in quotes: mode='\"batch\"'" in e.value.diagnostics[0].notes


def test_the_cli_says_how_to_quote_a_string_too(tmp_path, capsys):
    from netdsl.cli import main

    spec = tmp_path / "n.net"
    spec.write_text('network n(mode = "row") { input [3, 8, 8]\n stochastic_depth(0.1, mode) }')
    assert main(["check", str(spec), "--set", "mode=batch"]) == 1
    assert """= note: a string is written in quotes: --set mode='"batch"'""" in capsys.readouterr().err


@pytest.mark.parametrize("value", [["1", 2], ("1", 2), ["2 - 1", "[2][0]"]])
def test_strings_inside_lists_are_expressions_too(value):
    assert netdsl.compile(SPEC, depths=value).params["depths"] == [1, 2]


def test_an_error_in_a_string_inside_a_list_names_the_parameter():
    e = error(depths=[1, "2 // 0"])
    assert e.codes == ["E0211"] and e.diagnostics[0].notes == ("in the value given for `depths`",)


# Override text obeys max_nesting exactly as spec text does.

DEEP = {"parentheses": "(" * 6 + "1" + ")" * 6, "lists": "[" * 6 + "1" + "]" * 6,
        "operators": "- " * 6 + "1"}
ANY = "network n(x = none) { input [4]\n linear(2) }"  # takes a value of any type


@pytest.mark.parametrize("kind", DEEP)
def test_override_text_obeys_the_nesting_limit_like_spec_text(kind, tmp_path, capsys):
    from netdsl.cli import main

    limits = netdsl.Limits(max_nesting=5)
    text = DEEP[kind]
    with pytest.raises(netdsl.NetdslError) as in_spec:
        netdsl.compile(f"let x = {text}\nnetwork n() {{ input [4]\n linear(2) }}", limits=limits)
    assert in_spec.value.codes == ["E0402"]
    with pytest.raises(netdsl.NetdslError) as in_api:
        netdsl.compile(ANY, x=text, limits=limits)
    assert in_api.value.codes == ["E0402"]
    spec = tmp_path / "n.net"
    spec.write_text(ANY)
    assert main(["check", str(spec), "--limit", "max_nesting=5", "--set", f"x={text}"]) == 1
    assert "error[E0402]: nesting deeper than 5 levels" in capsys.readouterr().err
    # One level less is fine in all three.
    shallower = text[1:-1] if kind != "operators" else text[2:]
    netdsl.compile(f"let x = {shallower}\nnetwork n() {{ input [4]\n linear(2) }}", limits=limits)
    netdsl.compile(ANY, x=shallower, limits=limits)
