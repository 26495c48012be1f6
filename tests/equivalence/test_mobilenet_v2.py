"""specs/mobilenet_v2.net is torchvision's MobileNetV2: strict load, equal parameter
and key counts, eval outputs within 1e-5 absolute and 1e-4 relative, training-mode
outputs under one seed (dropout included), gradients, and torchvision's
initialisation statistics (tests/layers/test_init.py)."""

from pathlib import Path

import torch
import torchvision

from netdsl.testing import assert_equivalent, randomise_norms

SPEC = str(Path(__file__).resolve().parents[2] / "specs" / "mobilenet_v2.net")

# docs/specs.md's reference figures (torchvision 0.29.1): params, state_dict keys.
PARAMS, KEYS = 3_504_872, 314


def test_mobilenet_v2_is_torchvisions():
    torch.manual_seed(0)
    ref = randomise_norms(torchvision.models.mobilenet_v2(), 1)
    report = assert_equivalent(SPEC, ref, input=(3, 64, 64))
    assert sum(p.numel() for p in ref.parameters()) == PARAMS
    assert len(ref.state_dict()) == KEYS
    assert report.check("state_dict keys").summary.startswith(f"{KEYS} keys")
    for title in ("eval outputs", "training outputs"):
        check = report.check(title)
        # Both tolerances hold on their own, and the outputs are not near zero.
        assert check.max_abs <= 1e-5 and check.max_rel <= 1e-4 and check.details == [], title
    assert report.check("gradients").max_abs <= 1e-5


def test_blocks_are_named_and_classed_as_torchvision_does():
    from netdsl import build

    ours = build(SPEC, device="meta")
    with torch.device("meta"):
        ref = torchvision.models.mobilenet_v2()
    got = [n for n, m in ours.named_modules() if type(m).__name__ == "InvertedResidual"]
    want = [n for n, m in ref.named_modules() if type(m).__name__ == "InvertedResidual"]
    assert got == want and len(got) == 17
