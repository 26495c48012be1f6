"""Bad input never crashes netdsl: odd files get a clear diagnostic from the CLI
(exit 1, no traceback) or simply work, and bad numbers get located diagnostics."""

import subprocess
import sys

import pytest

import netdsl

SPEC = "network n() {\n    input [3, 8, 8]\n    conv2d(4, 3)\n    relu\n}\n"


def check(path, cwd=None):
    return subprocess.run([sys.executable, "-m", "netdsl", "check", str(path)], capture_output=True,
                          text=True, cwd=cwd)


def first(spec, **kw):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec, **kw)
    d = e.value.diagnostics[0]
    return d.code, (d.span.line, d.span.column) if d.span else None


# ---------------------------------------------------------------- files, through the CLI


@pytest.mark.slow
@pytest.mark.parametrize("name, content, code, message", [
    ("missing", None, "E0105", "spec file not found"),
    ("directory", "dir", "E0105", "is a directory"),
    ("empty", b"", "E0107", "the spec defines no network"),
    ("latin1", SPEC.replace("relu", "r\xe9lu").encode("latin-1"), "E0006", "not valid UTF-8"),
    ("nul", SPEC.replace("relu", "relu\0").encode(), "E0006", "NUL byte"),
])
def test_a_bad_file_is_a_diagnostic_from_the_cli(tmp_path, name, content, code, message):
    path = tmp_path / f"{name}.net"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    r = check(path)
    assert r.returncode == 1, r.stderr
    assert f"error[{code}]" in r.stderr and message in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.slow
def test_a_device_or_a_fifo_is_refused_not_read_for_ever(tmp_path):
    import os

    fifo = tmp_path / "pipe.net"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        r = check(path)
        assert r.returncode == 1 and "error[E0105]" in r.stderr and "not a regular file" in r.stderr
    # An import of one is refused the same way, at the import.
    (tmp_path / "main.net").write_text(f'import "{fifo.name}"\n' + SPEC)
    assert first(str(tmp_path / "main.net")) == ("E0105", (1, 1))


def test_a_non_utf8_byte_is_located_in_characters(tmp_path):
    # The column counts characters, as the parser's columns do: `é` is one column, two bytes.
    data = "network é() {\n  input [3, 8, 8]\n  r\xe9lu\n}\n".encode()
    data = data.replace("r\xe9lu".encode(), b"r\xe9lu")
    code, at = first(data)
    assert code == "E0006" and at == (3, 4)


@pytest.mark.parametrize("name, data", [
    ("bom", b"\xef\xbb\xbf" + SPEC.encode()),
    ("crlf", SPEC.replace("\n", "\r\n").encode()),
    ("cr", SPEC.replace("\n", "\r").encode()),
    ("tabs", SPEC.replace("    ", "\t").encode()),
    ("bom_crlf_tabs", b"\xef\xbb\xbf" + SPEC.replace("    ", "\t").replace("\n", "\r\n").encode()),
])
def test_bom_crlf_and_tabs_simply_work(tmp_path, name, data):
    path = tmp_path / f"{name}.net"
    path.write_bytes(data)
    assert netdsl.compile(str(path)).out_shape == (4, 6, 6)
    assert netdsl.compile(data).out_shape == (4, 6, 6)


def test_crlf_and_tabs_keep_positions_right():
    bad = "network n() {\r\n\tinput [3, 8, 8]\r\n\tconv2d(4, 99)\r\n}\r\n"
    assert first(bad) == ("E0304", (3, 12))


@pytest.mark.slow
def test_cli_on_crlf_and_tab_spec_works(tmp_path):
    path = tmp_path / "win.net"
    path.write_bytes(b"\xef\xbb\xbf" + SPEC.replace("    ", "\t").replace("\n", "\r\n").encode())
    r = check(path)
    assert r.returncode == 0, r.stderr


def test_a_very_long_line_is_a_short_diagnostic():
    spec = "network n() { input [3, 8, 8]\n relu " + "x" * 200_000 + " }"
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec)
    assert e.value.codes == ["E0001"]
    assert len(str(e.value)) < 1000  # neither the message nor the source line is repeated in full


def test_a_long_line_that_is_valid_works():
    spec = "network n() { input [3, 8, 8]\n" + "relu; " * 5_000 + "\n}"
    assert len(netdsl.compile(spec).body) == 5_000


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize("expr, code, column", [
    ("99999999999999999999", "E0215", 9),           # over 64 bits
    ("9" * 5000, "E0215", 9),                        # over Python's 4300-digit str limit
    ("2 ** 64", "E0215", 9),
    ("2 ** 62 * 4", "E0215", 9),
    ("4 / 0", "E0211", 13),
    ("4 // (2 - 2)", "E0211", 15),
    ("4 % 0", "E0211", 13),
    ("-4", "E0204", 9),
    ("0", "E0204", 9),
    ("4.0", "E0206", 9),
    ("8 / 2", "E0206", 9),                           # `/` gives a float, even when whole
    ("1e300", "E0206", 9),
    ("1e999", "E0215", 9),                           # a literal too large for a float is inf
    ("nan", "E0101", 9),                             # there is no NaN literal
    ("inf", "E0101", 9),
    ("1e308 * 10", "E0215", 9),
    ("1e308 * 10 - 1e308 * 10", "E0215", 9),
    ("round(1e300)", "E0215", 9),
    ("int(1e300)", "E0215", 9),
    ("10.0 ** 400", "E0215", 9),
    ("(-8) ** 0.5", "E0210", 9),
    ("sqrt(-1)", "E0210", 9),
    ("true", "E0206", 9),
    ('"4"', "E0206", 9),
])
def test_bad_numbers_are_located_diagnostics(expr, code, column):
    spec = f"network n() {{\n input [3, 8, 8]\n conv2d({expr}, 3)\n}}"
    assert first(spec) == (code, (3, column))


@pytest.mark.parametrize("shape, code", [
    ("[3, 0, 8]", "E0309"), ("[3, -8, 8]", "E0309"), ("[3.0, 8, 8]", "E0309"),
    ("[1, 3, 8, 8]", "E0309"), ("[3, 10000000, 8]", "E0407"), ("3", "E0309"), ("[]", "E0309"),
])
def test_bad_input_shapes_are_located(shape, code):
    assert first(f"network n() {{\n input {shape}\n relu\n}}") == (code, (2, 8))


@pytest.mark.parametrize("layer, code", [
    ("maxpool2d(0)", "E0204"), ("dropout(1.5)", "E0204"), ("dropout(-0.1)", "E0204"),
    ("batchnorm2d(eps = 0)", "E0204"), ("batchnorm2d(eps = 1e999)", "E0215"),
    ("adaptive_avgpool2d([2, 0])", "E0204"), ("conv2d(4, [3, 3, 3])", "E0206"),
    ("conv2d(4, 3, padding = -1)", "E0204"), ("relu * -1", "E0204"), ("relu * 2.5", "E0206"),
])
def test_bad_layer_values_are_diagnostics(layer, code):
    assert first(f"network n() {{\n input [3, 8, 8]\n {layer}\n}}")[0] == code


def test_huge_sizes_are_refused_not_allocated():
    # A 10^12-pixel feature map is legal shape arithmetic but over max_dim.
    assert first("network n() {\n input [3, 8, 8]\n adaptive_avgpool2d(1000000)\n flatten\n}")[0] == "E0407"


def test_a_bad_number_in_a_network_variant_is_located(tmp_path):
    base = tmp_path / "base.net"
    base.write_text("network n(width = 4) {\n input [3, 8, 8]\n conv2d(width, 1)\n}\n")
    variant = tmp_path / "variant.net"
    variant.write_text('import "base.net"\nnetwork m = n(width = 2 ** 99)\n')
    code, at = first(str(variant))
    assert code == "E0215" and at == (2, 23)
