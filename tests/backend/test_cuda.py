"""CUDA: the spec-built model is made, initialised and run on the GPU.

These tests need a CUDA device and skip without one (the CPU suite covers
everything else)."""

import pytest
import torch
import torchvision

import netdsl

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("name, reference", [("resnet50", torchvision.models.resnet50),
                                             ("vgg16", torchvision.models.vgg16)])
def test_build_on_cuda_matches_torchvision(spec_path, name, reference):
    model = netdsl.build(spec_path(name), device="cuda").eval()
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert all(b.device.type == "cuda" for b in model.buffers())
    ref = reference().cuda().eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224, device="cuda")
    torch.backends.cudnn.deterministic = True
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max().item() <= 1e-4


@cuda
def test_cli_build_on_cuda(spec_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "netdsl", "build", spec_path("resnet34"), "--device", "cuda"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "static MACs equal fvcore's total" in r.stdout
