"""Every shipped network against its reference, as one table run through
``netdsl.testing.assert_equivalent``: the reference's state_dict loads into the
spec's model strictly (same keys and shapes), the parameter counts are equal, and
the eval outputs, the training-mode outputs with the batch-norm statistics they
update (both models seeded alike, so dropout and stochastic depth draw the same
numbers) and the gradients of one fixed loss agree within the row's tolerances.

Each row names the spec, the reference's constructor and the reference figures
of docs/specs.md (parameters and state_dict keys, measured on the reference,
torchvision 0.29.1), and how to compare: the input shape, batch, seed,
tolerances, and whether to compare training mode and gradients. A spec may have
several rows, where its checks need several inputs (the full-size input in eval
mode, a small one for training and gradients). What a table cannot say (every
size of a family, initialisation statistics, the names of outputs) is in the
per-family files beside this one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torchvision
from hand_written import LeNet5, UNet, ValidUNet
from shipped import grant_for
from torch import nn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

import netdsl
from netdsl import ir
from netdsl.analysis.compare import flatten_output
from netdsl.ir.walk import walk
from netdsl.testing import assert_equivalent, randomise_norms

SPECS = Path(__file__).resolve().parents[2] / "specs"
tv = torchvision.models


@dataclass(frozen=True)
class Row:
    spec: str                               # specs/<spec>.net
    reference: Callable[[], nn.Module]      # called after torch.manual_seed(0)
    input: tuple[int, ...]                  # (C, H, W): the spec is compiled for it
    params: int                             # the reference's parameters and state_dict keys
    keys: int
    tag: str = ""                           # tells apart the rows of one spec
    overrides: dict = field(default_factory=dict)
    batch: int = 2
    seed: int = 0                           # draws the input, and seeds both models' training
    atol: float = 1e-5
    rtol: float = 1e-4
    train: bool = True
    gradients: bool = True
    # Besides assert_close's rule |ours - ref| <= atol + rtol·|ref|: the largest
    # difference of outputs and gradients is within atol, and that of outputs within
    # rtol where rtol > 0 — each tolerance holds on its own.
    each: bool = True
    # The reference's largest eval output lies in [lo, hi], and its outputs spread by
    # more than `spread` (standard deviation): the tolerances mean something.
    scale: tuple[float, float] | None = None
    spread: float | None = None
    ordered: bool = True                    # the state_dict keys in the reference's order
    # Random batch-norm statistics and affine terms in the reference first (randomise_norms):
    # fresh ones are near the identity in eval mode and would hide a wrong eps or a missing
    # norm. Off only where the row says why.
    randomise: bool = True
    fast: bool = False                      # in the fast subset (pytest -m "not slow")
    # The module prefixes granted to the spec's externs (docs/language.md, "Extern modules"):
    # timm.layers where the spec uses timm's own class, else none.
    grant: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.spec + (f"@{self.tag}" if self.tag else "")


def _convnext_tiny() -> nn.Module:
    # Layer scales and norm terms away from their fresh values: a layer scale of 1e-6
    # would hide a wrong block behind the residual's identity.
    model = tv.convnext_tiny()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_scale"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.25)
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):  # torchvision's LayerNorm2d too
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def _inception_v3() -> nn.Module:
    """With batch-norm statistics from one batch: with fresh ones (mean 0, var 1) and
    std-0.1 weights, eval-mode activations grow to ~1e12 and an absolute 1e-5
    tolerance would be meaningless."""
    model = tv.inception_v3(aux_logits=True, init_weights=True)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 299, 299))
    for m in norms:
        m.momentum = 0.1
    return model


def _lraspp() -> nn.Module:
    return tv.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None)


def _googlenet() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's init_weights FutureWarning
        return tv.googlenet()


def _squeezenet(name: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        model = getattr(tv, name)()
        with torch.no_grad():
            # torchvision starts the final conv at std 0.01, which leaves every logit near
            # zero after its ReLU and average: scale it so that the outputs mean something.
            model.classifier[1].weight.mul_(100)
        return model
    return make


def _timm(name: str, **kwargs) -> Callable[[], nn.Module]:
    """timm's model of that name, with fresh weights (never a download)."""
    def make() -> nn.Module:
        import timm
        return timm.create_model(name, pretrained=False, **kwargs)
    return make


def _nf(constructor) -> Callable[[], nn.Module]:
    """A normalizer-free reference with its weight-standardisation gains drawn at random."""
    def make() -> nn.Module:
        model = constructor()
        g = torch.Generator().manual_seed(4)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith(".gain"):
                    p.copy_(torch.rand(p.shape, generator=g) + 0.5)
        return model
    return make


def _fpn() -> nn.Module:
    return resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=nn.BatchNorm2d,
                               trainable_layers=5)


DENSENET_SMALL = dict(growth_rate=12, block_config=[2, 3], num_init_features=16, drop_rate=0.2,
                      num_classes=10)
UNET_SMALL = dict(depth=3, width=8, channels=3, num_classes=5)

FULL = (3, 224, 224)
# The full-size eval comparisons of the classic networks: one sample, and the absolute
# tolerance alone (rtol 0).
EVAL_ONE = dict(batch=1, seed=1, rtol=0.0, train=False, gradients=False)

TABLE = [
    # The article's seven, at their own input size.
    Row("lenet5", LeNet5, (1, 32, 32), 61_706, 10, batch=4, seed=3, atol=1e-6, rtol=0.0, fast=True),
    Row("alexnet", tv.alexnet, FULL, 61_100_840, 16, **EVAL_ONE),
    Row("vgg16", tv.vgg16, FULL, 138_357_544, 32, **EVAL_ONE),
    Row("resnet34", tv.resnet34, FULL, 21_797_672, 218, **EVAL_ONE),
    Row("resnet50", tv.resnet50, FULL, 25_557_032, 320, **EVAL_ONE),
    # Training mode exercises the residual adds and batch statistics: outputs and the
    # running statistics after the step within 1e-6.
    Row("resnet34", tv.resnet34, (3, 64, 64), 21_797_672, 218, tag="train", seed=2, atol=1e-6, rtol=0.0,
        gradients=False),
    Row("resnet50", tv.resnet50, (3, 64, 64), 25_557_032, 320, tag="train", seed=2, atol=1e-6, rtol=0.0,
        gradients=False),
    Row("resnet50", tv.resnet50, (3, 64, 64), 25_557_032, 320, tag="gradients", seed=5, rtol=0.0),
    # Its statistics come from one batch (_inception_v3), which random ones would undo.
    Row("inception_v3", _inception_v3, (3, 299, 299), 27_161_264, 580, seed=1, rtol=0.0, scale=(0.1, 1e3),
        randomise=False),
    Row("densenet121", tv.densenet121, FULL, 7_978_856, 727, seed=1, rtol=0.0, train=False,
        gradients=False, scale=(0.1, 1e3)),
    Row("densenet121", tv.densenet121, (3, 64, 64), 7_978_856, 727, tag="train", seed=2, rtol=0.0),
    Row("efficientnet_b0", tv.efficientnet_b0, FULL, 5_288_548, 360, seed=2, rtol=0.0,
        train=False, gradients=False, spread=1e-3),
    Row("efficientnet_b1", tv.efficientnet_b1, (3, 240, 240), 7_794_184, 508, seed=2,
        rtol=0.0, train=False, gradients=False, spread=1e-3),
    # Stochastic depth and dropout active, the same draws; batch norm's running statistics
    # after the step within 1e-6 + 1e-5·|ref|.
    Row("efficientnet_b0", tv.efficientnet_b0, (3, 64, 64), 5_288_548, 360, tag="train",
        batch=4, seed=7, atol=1e-6, rtol=1e-5),
    Row("efficientnet_b1", tv.efficientnet_b1, (3, 64, 64), 7_794_184, 508, tag="train",
        batch=4, seed=7, atol=1e-6, rtol=1e-5),
    # torchvision's other CNNs.
    Row("vgg16_bn", tv.vgg16_bn, (3, 32, 32), 138_365_992, 97),
    # torchvision registers the aux heads last; the spec, where they branch off.
    Row("googlenet", _googlenet, (3, 112, 112), 13_004_888, 364, batch=1, seed=1, train=False,
        gradients=False, ordered=False),
    # In training: GoogLeNetOutputs(logits, aux_logits2, aux_logits1), the aux heads' dropout.
    Row("googlenet", _googlenet, (3, 64, 64), 13_004_888, 364, tag="train", seed=3, ordered=False),
    Row("resnext50_32x4d", tv.resnext50_32x4d, (3, 64, 64), 25_028_904, 320, seed=1, train=False,
        gradients=False),
    Row("resnext50_32x4d", tv.resnext50_32x4d, (3, 32, 32), 25_028_904, 320, tag="train", seed=1),
    Row("wide_resnet50_2", tv.wide_resnet50_2, (3, 64, 64), 68_883_240, 320, seed=1, train=False,
        gradients=False),
    # RegNet's state_dict holds a block's projection shortcut first, the spec its body.
    Row("regnet_x_400mf", tv.regnet_x_400mf, (3, 128, 128), 5_495_976, 428, batch=1, seed=1, train=False,
        gradients=False, ordered=False),
    Row("regnet_y_400mf", tv.regnet_y_400mf, (3, 128, 128), 4_344_144, 384, batch=1, seed=1, train=False,
        gradients=False, ordered=False),
    # Training mode: the running statistics after the step within 1e-6 + 1e-5·|ref|.
    Row("regnet_x_400mf", tv.regnet_x_400mf, (3, 64, 64), 5_495_976, 428, tag="train", seed=2,
        atol=1e-6, rtol=1e-5, gradients=False, ordered=False),
    Row("regnet_y_400mf", tv.regnet_y_400mf, (3, 64, 64), 4_344_144, 384, tag="train", seed=2,
        atol=1e-6, rtol=1e-5, ordered=False),
    Row("mobilenet_v2", tv.mobilenet_v2, (3, 64, 64), 3_504_872, 314),
    Row("mobilenet_v3_large", tv.mobilenet_v3_large, (3, 64, 64), 5_483_032, 312,
        overrides={"resolution": 64}, batch=4, seed=7),
    Row("mobilenet_v3_small", tv.mobilenet_v3_small, (3, 64, 64), 2_542_856, 244,
        overrides={"resolution": 64}, batch=4, seed=7),
    Row("mnasnet1_0", tv.mnasnet1_0, (3, 64, 64), 4_383_312, 314),
    # The rounding of widths to multiples of 8 is where the widths differ from 1.0.
    Row("mnasnet", tv.mnasnet0_75, (3, 64, 64), 3_170_208, 314, tag="0.75",
        overrides={"alpha": 0.75}, train=False, gradients=False),
    Row("squeezenet1_0", _squeezenet("squeezenet1_0"), (3, 96, 96), 1_248_424, 52, gradients=False),
    Row("squeezenet1_1", _squeezenet("squeezenet1_1"), (3, 96, 96), 1_235_496, 52),
    Row("convnext_tiny", _convnext_tiny, (3, 32, 32), 28_589_128, 182, overrides={"resolution": 32},
        batch=4, seed=3),
    # Beyond a chain: split, names across the network, several outputs.
    Row("shufflenet_v2_x1_0", tv.shufflenet_v2_x1_0, (3, 32, 32), 2_278_604, 338, seed=1),
    Row("unet", lambda: UNet(**UNET_SMALL), (3, 32, 32), 120_861, 36, tag="small",
        overrides={**UNET_SMALL, "resolution": 32}),
    # The paper's U-Net: valid convolutions, each skip centre-cropped to the up-sampled map
    # (60 → 20 at depth 2), against a hand-written one; the paper's own size is checked below.
    Row("unet_paper", lambda: ValidUNet(depth=2, width=8, channels=3, num_classes=5), (3, 60, 60),
        29_501, 26, tag="small",
        overrides={"depth": 2, "width": 8, "channels": 3, "num_classes": 5, "resolution": 60}),
    Row("resnet50_fpn", _fpn, (3, 64, 64), 26_852_416, 334, overrides={"resolution": 64}, batch=1,
        train=False, gradients=False),
    # Not a multiple of 32: C5 is 3×3, C4 5×5, and each level is resized to the next's size.
    Row("resnet50_fpn", _fpn, (3, 72, 72), 26_852_416, 334, tag="72", overrides={"resolution": 72},
        batch=1, train=False, gradients=False),
    # Segmentation: a dict output, sizes read when the model runs (resize to `low`, to the input).
    Row("lraspp_mobilenet_v3_large", _lraspp, (3, 64, 64), 3_221_538, 319,
        overrides={"resolution": 64}, batch=2, seed=3),
    # Not square, and the output stride's sizes not powers of two (low 9 × 12, high 5 × 6).
    Row("lraspp_mobilenet_v3_large", _lraspp, (3, 72, 96), 3_221_538, 319, tag="72x96",
        overrides={"resolution": 64}, batch=2, seed=4, train=False, gradients=False),
    # timm's ResNet-D (a deep stem, average-pooled shortcuts) and ECA-ResNet-D, whose
    # attention convolves across the channels (conv1d) and gates the map.
    Row("resnet50d", _timm("resnet50d"), (3, 32, 32), 25_576_264, 332, seed=2),
    Row("ecaresnet101d", _timm("ecaresnet101d"), (3, 32, 32), 44_568_563, 671, seed=2),
    # Selective kernels: two paths stacked (unflatten), a softmax over them, mul and sum.
    Row("skresnet18", _timm("skresnet18"), (3, 32, 32), 11_958_056, 226, seed=2),
    # Split attention: radix groups mixed by a softmax over them (rSoftMax).
    Row("resnest26d", _timm("resnest26d"), (3, 32, 32), 17_069_448, 260, seed=2),
    Row("resnest", _timm("resnest14d"), (3, 32, 32), 10_611_688, 152, tag="14",
        overrides={"depth": 14}, seed=3, train=False, gradients=False),
    # TensorFlow's "same" padding, computed when the model runs: checked at 64 x 64, and a
    # row at 67 x 75, odd sizes where the padding differs from the symmetric one.
    Row("tf_efficientnet_b3", _timm("tf_efficientnet_b3"), (3, 64, 64), 12_233_232, 574,
        batch=4, seed=7, atol=1e-6, rtol=1e-5),
    Row("tf_efficientnet", _timm("tf_efficientnet_b0"), (3, 67, 75), 5_288_548, 360, tag="b0",
        overrides={"variant": 0}, seed=3, train=False, gradients=False),
    # Slices of channels, each added to the next; interleaved lists through dotted labels.
    Row("res2net50_14w_8s", _timm("res2net50_14w_8s"), (3, 32, 32), 25_059_816, 896, seed=2),
    Row("res2net", _timm("res2net50_26w_4s"), (3, 32, 32), 25_699_120, 512, tag="26w_4s", seed=3,
        train=False, gradients=False),
    # No batch norm: weight-standardised convolutions with a learnable gain (randomised:
    # a fresh gain of 1 would hide a wrong one), pre-activated blocks scaled by constants.
    Row("nf_resnet26", _nf(_timm("nf_resnet26")), (3, 32, 32), 15_995_176, 89, seed=2),
    Row("nf_resnet", _nf(_timm("nf_resnet50")), (3, 32, 32), 25_557_032, 161, tag="50",
        overrides={"depth": 50}, seed=3, train=False, gradients=False),
    # Inception blocks whose concatenated branches, projected back, are scaled by a
    # constant and added to the block's input (mul(out, by = scale), add).
    Row("inception_resnet_v2", _timm("inception_resnet_v2"), (3, 75, 75), 55_843_464, 1306, seed=2),
    # Cross-stage partial stages: half of the expanded map through the blocks (split).
    Row("cs3darknet_m", _timm("cs3darknet_m"), (3, 32, 32), 9_310_240, 254, seed=2),
    Row("cs3darknet", _timm("cs3darknet_focus_m"), (3, 32, 32), 9_304_360, 248, tag="focus_m",
        overrides={"width": 0.75, "depth": 0.67, "focus": True}, seed=3, train=False, gradients=False),
    # Dual paths in one tensor: the shortcut and the block's output cut apart (narrow),
    # the residual parts added, the dense parts concatenated.
    Row("dpn92", _timm("dpn92"), (3, 32, 32), 37_668_392, 577, seed=2),
    # DPN-b's two final convolutions, the small stem, SiLU where timm puts it.
    Row("dpn", _timm("dpn48b"), (3, 32, 32), 9_126_226, 341, tag="48b",
        overrides={"small": True, "num_init_features": 10, "k_r": 128, "b": True, "k_sec": [3, 4, 6, 3],
                   "inc_sec": [16, 32, 32, 64], "act": '"silu"'}, seed=3, train=False, gradients=False),
    # Ghost modules gated by attention computed at half the size and resized to the map
    # when the model runs (resize, mul): at 64 x 64, with the head's dropout (0.2) drawing
    # alike in training; and at 67 x 75, where the pooled maps are not half the size.
    Row("ghostnetv2_100", _timm("ghostnetv2_100"), (3, 64, 64), 6_156_908, 764, seed=2),
    Row("ghostnetv2_100", _timm("ghostnetv2_100"), (3, 67, 75), 6_156_908, 764, tag="67x75", seed=3,
        train=False, gradients=False),
    Row("ghostnet", _timm("ghostnet_100"), (3, 64, 64), 5_182_508, 512, tag="v1", seed=3, train=False,
        gradients=False),
    Row("sknet", _timm("skresnet34"), (3, 32, 32), 22_282_376, 426, tag="34",
        overrides={"depth": 34}, seed=3, train=False, gradients=False),
    # Trees whose roots concatenate every subtree's output: blocks of several tensors (a
    # tree takes its input and its children, a bottleneck its input and its shortcut).
    # Outputs are exact; in training, the randomised norms over 30 layers make the stem's
    # gradients reach 4e4 (1e9 at 32 x 32), where float32 rounding alone differs by
    # 0.08: gradients are held to the tolerance scaled to their magnitude, not to atol.
    Row("dla60", _timm("dla60"), (3, 64, 64), 22_036_632, 380, seed=2, each=False),
    # Roots that add their first child (DLA-102's shortcut_root), and grouped bottlenecks.
    Row("dla", _timm("dla102"), (3, 64, 64), 33_268_888, 632, tag="102",
        overrides={"levels": [1, 1, 1, 3, 4, 1], "root_residual": True}, seed=3, train=False, gradients=False),
    Row("dla", _timm("dla60x"), (3, 64, 64), 17_352_344, 380, tag="60x",
        overrides={"cardinality": 32, "base_width": 4}, seed=3, train=False, gradients=False),
    # One branch per resolution, each module a block of one tensor per branch, whose
    # outputs sum every branch brought to their resolution (strided convolutions down,
    # nearest upsampling up); timm's ModuleLists through dotted labels. The smallest
    # branch is 2 x 2 at 64 x 64. W18-small: one module a stage, stage 1 of one block.
    Row("hrnet_w18", _timm("hrnet_w18"), (3, 64, 64), 21_299_004, 1956, seed=2),
    Row("hrnet", _timm("hrnet_w18_small"), (3, 64, 64), 13_187_464, 552, tag="w18_small",
        overrides={"width": 16, "stage1_channels": 32, "stage1_blocks": 1, "blocks": 2, "modules": [1, 1, 1]},
        seed=3, train=False, gradients=False),
    Row("hrnet", _timm("hrnet_w32"), (3, 64, 64), 41_232_680, 1956, tag="w32", overrides={"width": 32},
        seed=3, train=False, gradients=False),
    # Dropout inside each dense layer, after its 3x3 conv, where torchvision applies it.
    Row("densenet", lambda: tv.DenseNet(**{**DENSENET_SMALL, "block_config": (2, 3)}), (3, 32, 32),
        37_346, 79, tag="dropout", overrides=DENSENET_SMALL, rtol=0.0),
    # A space-to-depth stem (unflatten, permute, flatten) and timm's own BlurPool2d, an
    # extern, after each stride-2 convolution; the projected shortcut registered (and
    # computed) before the block's body. v2_l: bottlenecks in every stage, at 68 x 76,
    # where the blur pool and the shortcut's ceil-mode pooling meet odd sizes (17 -> 9).
    Row("tresnet_m", _timm("tresnet_m"), (3, 64, 64), 31_389_032, 434, seed=2, grant=("timm.layers",)),
    Row("tresnet", _timm("tresnet_v2_l"), (3, 68, 76), 46_174_824, 746, tag="v2_l",
        overrides={"variant": '"v2_l"'}, seed=3, train=False, gradients=False, grant=("timm.layers",)),
]


def _param(row: Row):
    return pytest.param(row, id=row.id, marks=() if row.fast else pytest.mark.slow)


def test_the_table_names_each_row_once():
    assert len({row.id for row in TABLE}) == len(TABLE)


def test_each_row_grants_what_its_spec_needs_and_no_more():
    # timm.layers to a spec that declares an extern (which fails ungranted), nothing to one
    # that does not.
    for row in TABLE:
        assert (list(row.grant) or None) == grant_for(SPECS / f"{row.spec}.net"), row.id


@pytest.mark.parametrize("row", [_param(row) for row in TABLE])
def test_the_spec_is_its_reference(row: Row):
    torch.manual_seed(0)
    ref = row.reference()
    if row.randomise:
        randomise_norms(ref, row.seed + 1)
    # The reference figures (docs/specs.md): assert_equivalent's strict load and its
    # parameter check then hold the spec's model to the same.
    assert sum(p.numel() for p in ref.parameters()) == row.params
    assert len(ref.state_dict()) == row.keys
    grant = list(row.grant) or None
    report = assert_equivalent(str(SPECS / f"{row.spec}.net"), ref, input=row.input, batch=row.batch,
                               seed=row.seed, atol=row.atol, rtol=row.rtol, train=row.train,
                               gradients=row.gradients, grant=grant, **row.overrides)
    outputs = ["eval outputs"] + (["training outputs"] if row.train else [])
    for title in outputs:
        check = report.check(title)
        # A passing check has details only to say that the outputs are too near zero to
        # prove anything.
        assert check.ok and check.details == [], (title, check.details)
        if row.each:
            assert check.max_abs <= row.atol, title
            assert row.rtol == 0 or check.max_rel <= row.rtol, title
    if row.gradients:
        assert report.check("gradients").ok
        if row.each:
            assert report.check("gradients").max_abs <= row.atol
    else:
        assert report.check("gradients").ok is None
    if row.scale is not None or row.spread is not None:
        x = torch.randn(row.batch, *row.input, generator=torch.Generator().manual_seed(row.seed))
        with torch.no_grad():
            outs = [t for _, t in flatten_output(ref.eval()(x))]
        if row.scale is not None:
            assert row.scale[0] < max(t.abs().max().item() for t in outs) < row.scale[1]
        if row.spread is not None:
            assert min(t.std().item() for t in outs) > row.spread
    if row.ordered:
        # Names and shapes are the strict load's; the order is the parameters' order,
        # which an optimizer's state follows.
        ours = netdsl.build(str(SPECS / f"{row.spec}.net"), device="meta", input=row.input, grant=grant,
                            **row.overrides)
        assert list(ours.state_dict()) == list(ref.state_dict())


def test_a_segmentation_model_checked_at_one_size_runs_at_another_as_its_reference():
    # `resize` reads its sizes when the model runs: checked at 64 × 64, run at 72 × 96, the
    # output is 72 × 96 and equals torchvision's, where a size fixed in the spec would not.
    ref = randomise_norms(_lraspp(), 1).eval()
    model = netdsl.build(str(SPECS / "lraspp_mobilenet_v3_large.net"), resolution=64)
    model.load_state_dict(ref.state_dict(), strict=True)
    model.eval()
    x = torch.randn(2, 3, 72, 96)
    with torch.no_grad():
        got, want = model(x)["out"], ref(x)["out"]
    assert got.shape == want.shape == (2, 21, 72, 96)
    assert (got - want).abs().max() <= 1e-5 * (1 + want.abs().max())


def test_the_papers_unet_takes_572_and_gives_388():
    # Ronneberger et al., Figure 1: a 572x572 tile, a 388x388 map of 2 classes, and the
    # sizes of every level's crop (568 → 392 at the top, 64 → 56 at the bottom).
    net = netdsl.compile(str(SPECS / "unet_paper.net"))
    assert tuple(net.input_shape) == (1, 572, 572) and tuple(net.out_shape) == (2, 388, 388)
    crops = {n.sources[0]: tuple(n.out_shape) for n in walk(net.body) if isinstance(n, ir.Merge) and n.op == "crop"}
    assert crops == {"x3": (512, 56, 56), "x2": (256, 104, 104), "x1": (128, 200, 200), "x0": (64, 392, 392)}
    assert sum(p.numel() for p in ValidUNet().parameters()) == 31_030_658
