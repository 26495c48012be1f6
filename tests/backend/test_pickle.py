"""A built model pickles like any PyTorch model (netdsl/backend/runtime.py, SpecModule):
``torch.save(model)`` loads in a fresh process that never built the spec, and
``pickle`` and ``copy.deepcopy`` keep its classes, plans and outputs."""

import copy
import pickle
import subprocess
import sys

import pytest
import torch

import netdsl

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]

# Every kind of module a spec makes: a network with side outputs, a block that is a
# plain sequence, one with a residual and a gate, labelled and unlabelled groups, concat.
MIXED = """
block unit(c) { conv: conv2d(c, 1)\n bn: batchnorm2d\n relu }
block res(c) {
    residual { unit(c)\n conv2d(c, 3, padding = 1) } shortcut proj if in_channels != c { conv2d(c, 1) }
    gate { adaptive_avgpool2d(1)\n conv2d(c, 1)\n sigmoid }
}
network mixed() {
    input [3, 16, 16]
    stem: unit(8)
    side aux { adaptive_avgpool2d(1)\n flatten\n linear(4) }
    stage: { res(16)\n res(16) }
    concat { { conv2d(4, 1) }\n { maxpool2d(3, stride = 1, padding = 1) } }
    adaptive_avgpool2d(1)
    flatten
    fc: linear(10)
}
"""

# A block of several tensors: its forward takes two and returns a tuple.
SEVERAL = """
block fuse(c) {
    input x
    input skip
    from x
    conv: conv2d(c, 3, padding = 1) -> y
    add(y, skip) -> s
    from s
    relu -> out
    output tuple(out, s)
}
network several() {
    input [3, 16, 16]
    stem: conv2d(8, 3, padding = 1) -> skip
    body: conv2d(8, 1) -> x
    from x, skip
    fuse1: fuse(8) -> a, b
    concat(a, b)
}
"""

CASES = [("lenet5", (1, 32, 32)), ("efficientnet_b0", (3, 64, 64)), (MIXED, (3, 16, 16)),
         (SEVERAL, (3, 16, 16))]


def _spec(name):
    return str(ROOT / "specs" / f"{name}.net") if "\n" not in name else name


@pytest.mark.slow
@pytest.mark.parametrize("spec, shape", CASES, ids=["lenet5", "efficientnet_b0", "mixed", "several"])
def test_torch_save_of_the_model_loads_in_a_fresh_process(spec, shape, tmp_path):
    torch.manual_seed(0)
    model = netdsl.build(_spec(spec)).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        expected = model(x)
    torch.save(model, tmp_path / "model.pt")
    torch.save({"x": x, "y": expected}, tmp_path / "io.pt")
    # The same intra-op threads as this process: another count sums in another order.
    code = ("import torch\n"
            f"torch.set_num_threads({torch.get_num_threads()})\n"
            f"m = torch.load({str(tmp_path / 'model.pt')!r}, weights_only=False)\n"
            f"io = torch.load({str(tmp_path / 'io.pt')!r})\n"
            "with torch.no_grad():\n"
            "    y = m(io['x'])\n"
            "print(type(m).__name__, (y - io['y']).abs().max().item())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    name, diff = r.stdout.split()
    assert name == type(model).__name__ and float(diff) == 0.0


def test_pickle_and_deepcopy_keep_classes_plans_and_training_outputs():
    model = netdsl.build(MIXED).train()
    for twin in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert type(twin) is type(model)
        assert type(twin.stem) is type(model.stem) and type(twin.stem).__name__ == "Unit"
        assert isinstance(twin.stem, torch.nn.Sequential)  # a plain block stays a Sequential
        assert twin.state_dict().keys() == model.state_dict().keys()
        x = torch.randn(2, 3, 16, 16)
        torch.manual_seed(1)
        out = model(x)
        torch.manual_seed(1)
        again = twin(x)
        assert type(again) is type(out) and again._fields == ("logits", "aux")
        assert torch.equal(again.logits, out.logits) and torch.equal(again.aux, out.aux)
        # the twin's plan runs its own modules, not the original's
        with torch.no_grad():
            twin.fc.weight.zero_()
            twin.fc.bias.zero_()
        assert not twin.eval()(x).any() and model.eval()(x).any()
        model.train()


# Whole models saved by netdsl 0.1.0 (tests/fixtures/pickles/make.py says how they were made).
OLD = ROOT / "tests" / "fixtures" / "pickles"


# And by the release of commit fad7502, whose forms of a block had a class each
# (tests/fixtures/pickles/make_forms.py): later releases give them one.
FORMS = OLD / "forms"


@pytest.mark.slow
@pytest.mark.parametrize("folder, name", [(OLD, "constructs"), (OLD, "dataflow"), (OLD, "lenet5"),
                                          (FORMS, "tinyres"), (FORMS, "constructs"), (FORMS, "dataflow")])
def test_a_model_saved_by_an_earlier_release_loads_and_runs_in_a_fresh_process(folder, name):
    code = f"""
import torch
m = torch.load({str(folder / (name + '.pt'))!r}, weights_only=False)
io = torch.load({str(folder / (name + '.io.pt'))!r})
worst = 0.0
for mode in ("eval", "train"):
    m.train(mode == "train")
    torch.manual_seed(1)
    with torch.no_grad():
        y = m(*io["inputs"])
    want = io[mode]
    if isinstance(want, dict):
        assert list(y) == list(want), (list(y), list(want))
        pairs = [(y[k], want[k]) for k in want]
    elif isinstance(want, tuple):
        pairs = list(zip(y, want))
        assert len(pairs) == len(want)
    else:
        pairs = [(y, want)]
    worst = max([worst] + [(a - b).abs().max().item() for a, b in pairs])
print(type(m).__name__, worst)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=OLD)
    assert r.returncode == 0, r.stderr
    cls, worst = r.stdout.split()
    assert cls == {"constructs": "Constructs", "dataflow": "Dataflow", "lenet5": "Lenet5", "tinyres": "TinyRes"}[name]
    assert float(worst) == 0.0


def test_a_block_of_several_tensors_pickles_and_deepcopies():
    model = netdsl.build(SEVERAL).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        y = model(x)
        for twin in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
            assert type(twin.fuse1).__name__ == "Fuse"
            assert torch.equal(twin(x), y)
            out, s = twin.fuse1(x[:, :1].expand(2, 8, 16, 16), x[:, :1].expand(2, 8, 16, 16))
            assert torch.equal(out, torch.relu(s))
