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
