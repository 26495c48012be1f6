"""examples/train.py under torchrun: 2 processes on gloo, DDP and FSDP2, on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import netdsl

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "specs" / "lenet5.net")

# Each test starts two processes under torchrun and trains: seconds each.
pytestmark = pytest.mark.slow


def torchrun(tmp_path, *args, steps=24):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "examples" / "train.py"), LENET, "--steps", str(steps), "--batch-size", "8",
           "--hash-dir", str(tmp_path), "--checkpoint", str(tmp_path / "lenet5.pt"), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    return ranks, done.stderr


def _loads_into_a_fresh_build(path):
    model = netdsl.build(LENET)
    model.load_state_dict(torch.load(path), strict=True)
    return model


def test_ddp_two_processes_learn_and_stay_equal(tmp_path):
    ranks, err = torchrun(tmp_path)
    assert ranks[0]["hash"] == ranks[1]["hash"]  # the replicas took the same steps
    losses = [sum(r["losses"][i] for r in ranks) / 2 for i in range(24)]
    assert sum(losses[-6:]) / 6 < sum(losses[:6]) / 6 - 0.1, losses
    assert "24 steps on 2 process(es)" in err
    _loads_into_a_fresh_build(tmp_path / "lenet5.pt")


def test_fsdp2_shards_a_built_model_per_block_on_cpu(tmp_path):
    pytest.importorskip("torch.distributed.fsdp", reason="this torch has no FSDP2")
    ranks, _ = torchrun(tmp_path, "--fsdp", steps=6)
    assert ranks[0]["hash"] == ranks[1]["hash"]
    assert all(loss == loss for r in ranks for loss in r["losses"])  # no NaN
    _loads_into_a_fresh_build(tmp_path / "lenet5.pt")  # gathered: a plain state_dict


TWO = """network two() {
    input [1, 16, 16]
    conv2d(4, 3, padding = 1) -> f
    adaptive_avgpool2d(1)
    flatten
    linear(10) -> cls
    from f
    conv2d(10, 1) -> seg
    output dict(seg: seg, cls: cls)
}
"""


def _one_process(tmp_path, *args):
    (tmp_path / "two.net").write_text(TWO)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "examples" / "train.py"), "two.net", "--steps", "3",
                           "--batch-size", "4", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)


def test_the_output_that_feeds_the_loss_is_named_and_folders_are_made(tmp_path):
    # A two-output network failed inside the loss ("only batches of spatial targets
    # supported"), and a --checkpoint in a missing folder failed naming --save.
    done = _one_process(tmp_path, "--output", "cls", "--checkpoint", "out/deep/two.pt", "--hash-dir", "h/x")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "deep" / "two.pt").is_file() and (tmp_path / "h" / "x" / "rank0.json").is_file()
    first = _one_process(tmp_path)
    assert first.returncode == 1
    assert "is [4, 10, 16, 16], not [N, classes]; choose one with --output NAME (seg, cls)" in first.stderr
    wrong = _one_process(tmp_path, "--output", "logits")
    assert wrong.returncode == 1 and "--output logits: the outputs are seg, cls" in wrong.stderr


def test_a_checkpoint_that_cannot_be_written_is_refused_before_training(tmp_path):
    (tmp_path / "sub").mkdir()
    done = _one_process(tmp_path, "--output", "cls", "--checkpoint", "sub")
    assert done.returncode == 1 and "--checkpoint sub: is a directory" in done.stderr
    assert "train:" not in done.stderr and "steps on" not in done.stderr  # nothing was trained
