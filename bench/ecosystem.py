"""A built model in PyTorch's tools, every shipped network: the figures of
docs/cli.md's "Using a built model with PyTorch tools".

    python bench/ecosystem.py                  # all networks (a few minutes on two cores)
    python bench/ecosystem.py lenet5 resnet50  # some of them

For each network, at the small input given in NETS, in eval mode, after
calibrating batch norm so that outputs have realistic magnitudes (see
``calibrate``), it prints

  max |y|         the largest output, for scale;
  graphs, breaks  ``torch._dynamo.explain(model)(x)``: graph count and graph breaks;
  export          max |difference| between eager and ``torch.export.export`` after a
                  ``torch.export.save``/``load`` round trip through memory;
  fx, script, trace  max |difference| of ``torch.fx.symbolic_trace``,
                  ``torch.jit.script`` and ``torch.jit.trace`` against eager;
  ONNX s, ONNX diff  seconds for ``netdsl.backend.onnx.export`` and max |difference|
                  between onnxruntime and eager (needs ``pip install 'netdsl[onnx]'``).

tests/backend/test_ecosystem.py imports NETS and ``calibrate`` from here, so the table
and the tests cover the same networks at the same inputs.
"""

from __future__ import annotations

import io
import math
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Net:
    name: str                       # specs/NAME.net
    input: tuple[int, ...]          # a small input the spec accepts, to keep things fast
    reference: str | None           # torchvision.models.NAME with the same state_dict keys
    nodes: tuple[str, ...]          # torchvision's node names for create_feature_extractor
    grant: tuple[str, ...] = ()     # the modules of the spec's externs, granted to build it


NETS = (
    Net("lenet5", (1, 32, 32), None, ("conv2", "fc1")),
    Net("alexnet", (3, 63, 63), "alexnet", ("features.5", "avgpool")),
    Net("vgg16", (3, 32, 32), "vgg16", ("features.4", "features.16")),
    # The auxiliary head's 5x5 convolution needs Mixed_6e at 17x17: 299x299.
    Net("inception_v3", (3, 299, 299), "inception_v3", ("Mixed_5b", "Mixed_6e")),
    Net("resnet34", (3, 32, 32), "resnet34", ("layer1", "layer3.1.bn2")),
    Net("resnet50", (3, 32, 32), "resnet50", ("layer2.0.downsample", "layer3")),
    Net("densenet121", (3, 32, 32), "densenet121", ("features.denseblock1", "features.transition2")),
    Net("efficientnet_b0", (3, 32, 32), "efficientnet_b0", ("features.4", "features.6.0.block.1")),
    Net("efficientnet_b1", (3, 32, 32), "efficientnet_b1", ("features.2", "features.7")),
    Net("vgg16_bn", (3, 32, 32), "vgg16_bn", ("features.6", "features.20")),
    Net("googlenet", (3, 64, 64), "googlenet", ("inception3a", "inception4e")),
    Net("resnext50_32x4d", (3, 32, 32), "resnext50_32x4d", ("layer1", "layer3")),
    Net("wide_resnet50_2", (3, 32, 32), "wide_resnet50_2", ("layer2", "layer4")),
    Net("mobilenet_v2", (3, 32, 32), "mobilenet_v2", ("features.3", "features.14")),
    Net("mobilenet_v3_large", (3, 32, 32), "mobilenet_v3_large", ("features.4", "features.12")),
    Net("mobilenet_v3_small", (3, 32, 32), "mobilenet_v3_small", ("features.2", "features.9")),
    Net("squeezenet1_0", (3, 64, 64), "squeezenet1_0", ("features.3", "features.12")),
    Net("squeezenet1_1", (3, 64, 64), "squeezenet1_1", ("features.3", "features.12")),
    Net("mnasnet1_0", (3, 32, 32), "mnasnet1_0", ("layers.8", "layers.14")),
    Net("shufflenet_v2_x0_5", (3, 32, 32), "shufflenet_v2_x0_5", ("stage2", "stage4")),
    Net("shufflenet_v2_x1_0", (3, 32, 32), "shufflenet_v2_x1_0", ("stage2", "stage4")),
    Net("shufflenet_v2_x1_5", (3, 32, 32), "shufflenet_v2_x1_5", ("stage3", "conv5")),
    Net("shufflenet_v2_x2_0", (3, 32, 32), "shufflenet_v2_x2_0", ("stage3", "conv5")),
    Net("regnet_x_400mf", (3, 32, 32), "regnet_x_400mf", ("stem", "trunk_output.block2")),
    Net("regnet_y_400mf", (3, 32, 32), "regnet_y_400mf", ("stem", "trunk_output.block3")),
    Net("convnext_tiny", (3, 32, 32), "convnext_tiny", ("features.1", "features.5")),
    Net("unet", (1, 32, 32), None, ("enc1", "enc3")),
    Net("resnet50_fpn", (3, 64, 64), None, ("body.layer2", "body.layer4")),
    Net("lraspp_mobilenet_v3_large", (3, 64, 64), None, ("backbone.4", "classifier.cbr")),
    Net("unet_paper", (1, 188, 188), None, ("enc1", "enc3")),
    # timm's (not torchvision's): the node names are timm's module names.
    Net("resnet50d", (3, 32, 32), None, ("conv1", "layer2.0.downsample")),
    Net("ecaresnet101d", (3, 32, 32), None, ("layer1.0.se.conv", "layer3")),
    Net("skresnet18", (3, 32, 32), None, ("layer1.0.conv1.attn.fc_select", "layer3")),
    Net("resnest26d", (3, 32, 32), None, ("layer1.0.conv2.fc2", "layer3")),
    Net("tf_efficientnet_b3", (3, 33, 33), None, ("blocks.1.0.conv_dw", "blocks.5")),
    Net("res2net50_14w_8s", (3, 32, 32), None, ("layer1.0.convs.3", "layer3")),
    Net("nf_resnet26", (3, 32, 32), None, ("stem.conv", "stages.2")),
    Net("inception_resnet_v2", (3, 75, 75), None, ("mixed_5b", "repeat_1.3")),
    Net("cs3darknet_m", (3, 32, 32), None, ("stem.conv2", "stages.2.blocks.1")),
    Net("dpn92", (3, 32, 32), None, ("features.conv2_1.c1x1_w_s1", "features.conv4_3")),
    Net("ghostnetv2_100", (3, 64, 64), None, ("blocks.3.0.ghost1.short_conv", "blocks.6")),
    Net("dla60", (3, 32, 32), None, ("level1", "level3.tree2.root")),
    Net("hrnet_w18", (3, 32, 32), None, ("layer1", "incre_modules.2")),
    # timm's BlurPool2d downsamples, an extern: built with timm.layers granted.
    Net("tresnet_m", (3, 64, 64), None, ("body.s2d", "body.layer2.0.conv1.aa"), grant=("timm.layers",)),
)


def spec(net: Net) -> str:
    return str(ROOT / "specs" / f"{net.name}.net")


def build(net: Net):
    """The network built at its small input, under its grant."""
    import netdsl

    return netdsl.build(spec(net), input=net.input, grant=list(net.grant) or None)


def calibrate(model, shape, seed: int = 0):
    """Give every batch norm the running statistics of a random batch, then eval mode.

    A fresh model's batch norms have mean 0 and variance 1, so in eval mode they pass
    activations through unscaled and Inception v3's logits grow to 1e12: a 1e-4
    tolerance would mean nothing there. Calibrated, outputs are of order 1 as with
    trained weights.
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: one batch sets the statistics
    # Enough values per channel where the maps are small (1x1 at the end of a
    # 32x32 EfficientNet): statistics of four values would scale some channels by
    # 1/sqrt(eps) and make the outputs as large as they were uncalibrated.
    batch = max(4, min(32, 2**16 // math.prod(shape[1:]))) if len(shape) == 3 else 32
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.train()(torch.randn(batch, *shape, generator=g))
    for m in norms:
        m.momentum = 0.1
    return model.eval()


def _diff(a, b) -> float:
    return (a - b).abs().max().item()


def measure(net: Net) -> dict:
    import torch

    torch.manual_seed(0)
    model = calibrate(build(net), net.input)
    x = torch.randn(2, *net.input, generator=torch.Generator().manual_seed(1))
    row = {"net": net.name, "input": "×".join(map(str, net.input))}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation warnings
        y = model(x)
        row["max_y"] = y.abs().max().item()
        torch._dynamo.reset()
        e = torch._dynamo.explain(model)(x)
        row["graphs"], row["breaks"] = e.graph_count, e.graph_break_count
        buf = io.BytesIO()
        torch.export.save(torch.export.export(model, (x,)), buf)
        buf.seek(0)
        row["export"] = _diff(torch.export.load(buf).module()(x), y)
        row["fx"] = _diff(torch.fx.symbolic_trace(model)(x), y)
        row["script"] = _diff(torch.jit.script(model)(x), y)
        row["trace"] = _diff(torch.jit.trace(model, x, check_trace=False)(x), y)
    try:
        import onnxruntime

        from netdsl.backend.onnx import export
    except ImportError:
        row["onnx_s"] = row["onnx"] = None
        return row
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        path = export(model, x, Path(d) / "model.onnx")
        row["onnx_s"] = time.perf_counter() - t
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        row["onnx"] = _diff(torch.from_numpy(out), y)
    return row


def render(rows) -> str:
    head = ("network", "input", "max |y|", "graphs", "breaks", "export", "fx", "script", "trace", "ONNX s",
            "ONNX diff")
    cells = [head]
    for r in rows:
        onnx = ("—", "—") if r["onnx"] is None else (f"{r['onnx_s']:.1f}", f"{r['onnx']:.1e}")
        cells.append((r["net"], r["input"], f"{r['max_y']:.1f}", str(r["graphs"]), str(r["breaks"]),
                      *(f"{r[k]:.1e}" if r[k] else "0" for k in ("export", "fx", "script", "trace")), *onnx))
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    import torch

    torch.set_num_threads(2)
    chosen = [n for n in NETS if not argv or n.name in argv]
    unknown = set(argv) - {n.name for n in NETS}
    if unknown:
        print(f"unknown network(s): {', '.join(sorted(unknown))}; one of "
              f"{', '.join(n.name for n in NETS)}", file=sys.stderr)
        return 2
    rows = []
    for net in chosen:
        rows.append(measure(net))
        print(f"{net.name}: done", file=sys.stderr, flush=True)
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
