"""Reading spec files and resolving imports (netdsl/syntax/loader.py): a file that cannot be
read is E0105 wherever it is named, and imports reach only the root spec's directory,
the standard library and the import path (E0114)."""

import subprocess
import sys
from pathlib import Path

import pytest

import netdsl

SPEC = "network n() {\n    input [3, 8, 8]\n    relu\n}\n"
USES = "network n() {\n    input [3, 8, 8]\n    b\n}\n"
BLOCK = "block b() { relu }\n"
LONG = "y" * 5000 + ".net"


def check(path, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "netdsl", "check", str(path), *args],
                          capture_output=True, text=True, cwd=cwd)


def diagnostic(spec, **kw):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec, **kw)
    d = e.value.diagnostics[0]
    return d.code, (d.span.line, d.span.column) if d.span else None, d.message


@pytest.fixture
def loop(tmp_path):
    (tmp_path / "a.net").symlink_to("b.net")
    (tmp_path / "b.net").symlink_to("a.net")
    return tmp_path


# ---------------------------------------------------------------- files that cannot be read (E0105)


@pytest.mark.slow
@pytest.mark.parametrize("name, message", [("a.net", "symbolic links in a loop"),
                                           (LONG, "file name too long")], ids=["loop", "long"])
def test_an_unreadable_name_is_E0105_from_the_cli_the_api_and_an_import(loop, name, message):
    # Path.exists() and Path.resolve() raised here: RuntimeError for the loop,
    # OSError(ENAMETOOLONG) for the name.
    r = check(name, cwd=loop)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error[E0105]: {message}" in r.stderr and len(r.stderr) < 1000
    code, at, msg = diagnostic(str(loop / name))
    assert code == "E0105" and at is None and msg.startswith(message)
    (loop / "main.net").write_text(f'import "{name}"\n' + SPEC)
    code, at, msg = diagnostic(str(loop / "main.net"))
    assert (code, at) == ("E0105", (1, 1)) and msg.startswith(message)
    r = check("main.net", cwd=loop)
    assert r.returncode == 1 and "Traceback" not in r.stderr and f"error[E0105]: {message}" in r.stderr


def test_a_long_name_is_cut_in_the_message(tmp_path):
    code, _, msg = diagnostic(str(tmp_path / LONG))
    assert code == "E0105" and msg.endswith(f"({len(str(tmp_path / LONG))} characters)") and len(msg) < 200


# ---------------------------------------------------------------- the import path (E0114)


@pytest.fixture
def tree(tmp_path):
    """root/ (the spec's directory, with a sub/ folder), lib/ (an import-path directory), out/."""
    for d in ("root/sub", "lib", "out"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "out" / "secret.net").write_text("block b() { relu }\nlet secret = 1\n")
    (tmp_path / "lib" / "b.net").write_text('import "helper.net"\nblock b() { h }\n')
    (tmp_path / "lib" / "helper.net").write_text("block h() { relu }\n")
    return tmp_path


def _main(tree, imports, body=USES):
    path = tree / "root" / "main.net"
    path.write_text(imports + "\n" + body)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("target", ["../out/secret.net", "sub/../../out/secret.net", "ABS",
                                    "std/../../../../../../../../../../../../../{out}/secret.net"],
                         ids=["dotdot", "dotdot_inside", "absolute", "std_escape"])
def test_an_import_outside_the_tree_is_E0114(tree, target):
    target = target.replace("ABS", str(tree / "out" / "secret.net")).replace(
        "{out}", str(tree / "out").lstrip("/"))
    path = _main(tree, f'import "{target}"')
    code, at, msg = diagnostic(str(path))
    assert (code, at) == ("E0114", (1, 1)) and "import outside the import path" in msg
    r = check(path)
    assert r.returncode == 1 and "error[E0114]" in r.stderr and "--import-path" in r.stderr
    assert "secret" not in r.stderr.replace("secret.net", "")  # nothing of the file is quoted


def test_a_symlink_out_of_the_tree_is_E0114(tree):
    (tree / "root" / "link.net").symlink_to(tree / "out" / "secret.net")
    (tree / "root" / "sub" / "dirlink").symlink_to(tree / "out")
    assert diagnostic(str(_main(tree, 'import "link.net"')))[:2] == ("E0114", (1, 1))
    assert diagnostic(str(_main(tree, 'import "sub/dirlink/secret.net"')))[:2] == ("E0114", (1, 1))


def test_imports_inside_the_tree_and_the_standard_library_work(tree):
    (tree / "root" / "sub" / "b.net").write_text('import "../common.net"\nblock b() { c }\n')
    (tree / "root" / "common.net").write_text('import "std/blocks.net"\nblock c() { relu }\n')
    assert netdsl.compile(_main(tree, 'import "sub/b.net"')).body[0].cls == "B"
    # A link that stays inside; its imports are looked up next to the link, as a compiler does.
    (tree / "root" / "sub" / "block.net").write_text(BLOCK)
    (tree / "root" / "inner.net").symlink_to(tree / "root" / "sub" / "block.net")
    assert netdsl.compile(_main(tree, 'import "inner.net"')).body[0].cls == "B"


@pytest.mark.slow
def test_the_import_path_is_searched_after_the_importing_files_directory(tree):
    path = _main(tree, 'import "b.net"')
    assert diagnostic(str(path))[0] == "E0105"  # not next to main.net, and no import path
    # Found in lib/, whose own imports are looked up next to them, in lib/.
    net = netdsl.compile(path, import_path=[tree / "lib"])
    assert net.body[0].body[0].cls == "H"
    r = check(path, "--import-path", str(tree / "lib"))
    assert r.returncode == 0, r.stderr
    # Next to the importing file wins over the import path; import-path directories go in order.
    (tree / "root" / "b.net").write_text("block b() { conv2d(2, 1) }\n")
    assert netdsl.compile(path, import_path=[tree / "lib"]).body[0].body[0].kind == "conv2d"
    (tree / "root" / "b.net").unlink()
    (tree / "out" / "b.net").write_text("block b() { conv2d(5, 1) }\n")
    assert netdsl.compile(path, import_path=[tree / "out", tree / "lib"]).out_shape[0] == 5
    assert netdsl.compile(path, import_path=[str(tree / "lib"), str(tree / "out")]).out_shape[0] == 3
    # A file under an import-path directory may be named by a path that leads there.
    assert netdsl.compile(_main(tree, 'import "../lib/b.net"'), import_path=[tree / "lib"])


@pytest.mark.slow
def test_an_import_path_that_is_not_a_directory_is_refused(tree):
    path = _main(tree, "")
    r = check(path, "--import-path", str(tree / "nowhere"))
    assert r.returncode == 2 and "--import-path" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ValueError, match="not a directory"):
        netdsl.compile(path, import_path=[tree / "out" / "secret.net"])


def test_a_spec_given_as_text_imports_from_the_current_directory(tree, monkeypatch):
    monkeypatch.chdir(tree / "root")
    (tree / "root" / "b.net").write_text(BLOCK)
    assert netdsl.compile('import "b.net"\n' + USES).body[0].cls == "B"
    assert diagnostic('import "../out/secret.net"\n' + USES)[:2] == ("E0114", (1, 1))
    assert netdsl.build('import "b.net"\n' + USES, import_path=[tree / "lib"]) is not None


def test_the_shipped_specs_and_the_standard_library_import_as_before():
    root = Path(__file__).resolve().parents[2] / "specs"
    for name in ("resnet50", "efficientnet_b0", "densenet121", "vgg16"):
        assert netdsl.compile(root / f"{name}.net").name


def test_nothing_outside_is_opened_or_even_looked_for(tree, monkeypatch):
    # E0114 whether or not the file exists: the answer would tell what is on the machine.
    touched = []
    for method in ("stat", "read_bytes", "open", "exists", "is_file"):
        real = getattr(Path, method)
        monkeypatch.setattr(Path, method, lambda self, *a, _real=real, **kw: touched.append(str(self))
                            or _real(self, *a, **kw))
    for target in ("../out/secret.net", "../out/nothing_here.net"):
        assert diagnostic(str(_main(tree, f'import "{target}"')))[:2] == ("E0114", (1, 1))
    assert touched and not [p for p in touched if "out" in Path(p).parts]
