"""How the package is found once installed (pyproject.toml's setuptools settings)."""

import subprocess
import sys


def test_a_clone_folder_named_netdsl_beside_a_script_does_not_hide_the_package(tmp_path):
    # To Python, a clone of the repository kept as `netdsl/` beside a script is a folder
    # named netdsl without an __init__.py: a namespace package, used only where the
    # path search finds no regular package. The editable install must let it find one.
    (tmp_path / "netdsl" / "specs").mkdir(parents=True)
    (tmp_path / "netdsl" / "README.md").write_text("a clone\n")
    script = tmp_path / "script.py"
    script.write_text("import netdsl\nprint(netdsl.__file__)\nprint(netdsl.build('network n() {\\n"
                      "    input [4]\\n    linear(2)\\n}\\n'))\n")
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    found, *model = run.stdout.splitlines()
    assert found.endswith("__init__.py") and not found.startswith(str(tmp_path))
    assert "Linear(in_features=4, out_features=2" in "\n".join(model)
