"""Fixtures for every test folder, and the one place that says how tests import.

The tests sit in folders that mirror the package (tests/syntax/, tests/check/, ...).
pytest imports each test file by its path (``--import-mode=importlib`` in
pyproject.toml), so two folders may hold files of the same name, and no folder needs an
``__init__.py``. The helper modules the tests share (doc_blocks, errors_doc, torch_ops,
mermaid, hostile_specs) stay here in tests/, where tools and docs cite them: this file
puts tests/ on ``sys.path`` so that every folder imports them by name.
"""

import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SPECS = ROOT / "specs"

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

# The property tests draw the same examples on every run: a red suite then means a
# change broke something, never that a new draw found an old bug. Exploration with fresh
# draws is the fuzzer's job (bench/fuzz.py, seeded), or this profile's:
# HYPOTHESIS_PROFILE=explore pytest ...
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

# Keep intra-op threads predictable, and share the cores among pytest-xdist's workers
# (`pytest -n auto`) rather than giving each worker all of them.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(4, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture
def spec_path():
    return lambda name: str(SPECS / f"{name}.net")
