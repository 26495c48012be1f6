"""The one forward (netdsl/backend/forward.py): a built model runs Python source
written from the spec, the same lines `netdsl export --format python` prints, and a
failure inside it names the spec line it comes from."""

import inspect
import re
import textwrap
import traceback
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.backend.codegen import generate
from netdsl.backend.runtime import InputShapeError

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = sorted((ROOT / "specs").glob("*.net"))


def _forwards(model) -> dict[str, str]:
    """The dedented forward source of each class of ``model`` that has one of its own."""
    out = {}
    for m in model.modules():
        recipe = type(m).__dict__.get("_recipe")
        if recipe is not None and recipe[4] is not None:
            out[textwrap.dedent(recipe[4])] = type(m).__name__
    return out


def _exported_forwards(source: str) -> set[str]:
    """The dedented ``def forward`` bodies of a generated file."""
    found = set()
    for m in re.finditer(r"^    def forward\(.*?(?=^\S|^    def |\Z)", source, re.M | re.S):
        found.add(textwrap.dedent(m.group(0)).rstrip("\n") + "\n")
    return found


@pytest.mark.parametrize("path", MEMBERS, ids=lambda p: p.stem)
def test_build_runs_the_forwards_export_writes(path):
    # Every forward a built model runs is, line for line, one the exported file defines:
    # the two come from one writer, so they cannot drift apart.
    model = netdsl.build(str(path), device="meta")
    exported = _exported_forwards(generate(str(path)))
    for source, cls in _forwards(model).items():
        # The export names the outputs type as its file does; the rest is the same text.
        if source not in exported:
            pytest.fail(f"{cls}'s forward is not in the exported file:\n{source}")


def test_inspect_shows_the_forward_with_its_spec_lines():
    model = netdsl.build(str(ROOT / "specs" / "resnet50.net"), device="meta")
    block = inspect.getsource(type(model.layer1[0]).forward)
    assert block.startswith("def forward(self, x):\n")
    assert "out = self.conv1(x)  # " in block and re.search(r"out \+= identity  # \S+resnet\.net:\d+", block)
    assert "x = torch.flatten(x, 1)" in inspect.getsource(type(model).forward)


def test_a_failure_in_a_forward_names_the_spec_line_and_the_statement():
    # resnet50_fpn was checked for 224x224; at 200x200 its top-down add cannot line up.
    model = netdsl.build(str(ROOT / "specs" / "resnet50_fpn.net")).eval()
    with pytest.raises(InputShapeError) as e, torch.no_grad():
        model(torch.randn(1, 3, 200, 200))
    (note,) = e.value.__notes__
    assert re.search(r"specs/resnet50_fpn\.net:\d+: `add\(", note), note
    assert "in Resnet50Fpn.forward" in note
    # The traceback's frame of the forward shows the statement and its spec line.
    frames = traceback.extract_tb(e.value.__cause__.__traceback__)
    ours = [f for f in frames if f.filename.startswith("<netdsl: ")]
    assert ours and re.search(r"# \S*specs/resnet50_fpn\.net:\d+$", ours[-1].line)


def test_a_failure_that_is_not_the_inputs_keeps_its_type_and_gets_the_note(monkeypatch):
    model = netdsl.build("network n() { input [3, 8, 8]\n c: conv2d(4, 3)\n relu }")

    def broken(self, x):
        raise RuntimeError("boom")

    monkeypatch.setattr(type(model.c), "forward", broken)
    with pytest.raises(RuntimeError, match="boom") as e:
        model(torch.randn(1, 3, 8, 8))
    assert type(e.value) is RuntimeError
    assert any("<spec>:2" in n and "self.c(x)" in n for n in e.value.__notes__)


def test_a_wrong_rank_is_refused_before_anything_runs():
    model = netdsl.build("network n() { input [3, 8, 8]\n c: conv2d(4, 3) }")
    with pytest.raises(InputShapeError, match="one sample without its batch dimension"):
        model(torch.randn(3, 8, 8))


def test_a_body_of_many_branches_gets_distinct_names_for_each():
    # Names were found by counting up from 2 each time: quadratic in the branches, which
    # made a 10,000-branch concat take seconds to write.
    from netdsl.backend.forward import write

    net = netdsl.compile("network n() { input [1, 4, 4]\n concat { for i in range(3000) { conv2d(1, 1) } } }")
    src = write(net.body, net).text()
    names = re.findall(r"^        (branch\d*) = ", src, re.M)
    assert len(names) == 3000 and len(set(names)) == 3000


def test_nine_named_inputs_and_keyword_calls():
    # A built model had a forward for at most eight inputs (KeyError: 9 past them).
    names = [f"s{k}" for k in range(9)]
    spec = "network n() {\n" + "".join(f" input {n}: [1, 4, 4]\n" for n in names) + \
           f" add({', '.join(names)})\n}}"
    model = netdsl.build(spec)
    assert list(inspect.signature(model.forward).parameters) == names
    xs = {n: torch.full((1, 1, 4, 4), float(k)) for k, n in enumerate(names)}
    assert model(**xs).flatten()[0].item() == sum(range(9))
    assert torch.equal(model(*xs.values()), model(**xs))


def test_a_reused_scale_multiplies_by_the_same_parameter():
    # `reuse` of a `scale` label failed with KeyError at build.
    model = netdsl.build("network n() { input [4, 2, 2]\n s: scale(init = 0.5)\n relu\n reuse s }")
    assert [n for n, _ in model.named_parameters()] == ["s"]
    x = torch.ones(1, 4, 2, 2)
    assert torch.equal(model(x), torch.full((1, 4, 2, 2), 0.25))
