import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

# Two cores on CI: keep intra-op threads predictable.
torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


@pytest.fixture
def spec_path():
    return lambda name: str(SPECS / f"{name}.net")
