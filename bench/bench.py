"""netdsl against its references, in one run: front end, build, forward, analysis.

    python bench/bench.py            # full run (several minutes on two cores)
    python bench/bench.py --quick    # fewer repetitions, same tables
    python bench/bench.py --threads 1 --out docs/bench-run.md

For every shipped spec that has a torchvision reference it measures

  (a) the front end (parse → checked IR, ``netdsl.compile``), and its growth on
      generated specs of 100, 1,000 and 10,000 layers (time per layer);
  (b) building the model (``netdsl.build``: front end + lowering) against
      torchvision's constructor, on the CPU and on the meta device;
  (c) forward latency in eval mode under ``torch.no_grad()``, batch 1 and 8, the
      built model against torchvision's with the same weights;
  (d) static analysis (``netdsl.analysis.analyse``) against fvcore's
      ``FlopCountAnalysis(model, x).total()`` on the built model.

A/B timings are interleaved (A B, B A, A B, ...) and each figure is a median;
a ratio is the median of the per-pair ratios, so slow phases of a shared
machine hit both sides alike. Ratios are netdsl / reference: below 1 is faster.
Results are printed as markdown (and written to ``--out`` if given).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torchvision

import netdsl
from netdsl.analysis import analyse
from netdsl.backend import runtime
from netdsl.backend.lower import lower
from netdsl.check import memo
from netdsl.layers import LAYERS
from netdsl.syntax import parser

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

# spec name → torchvision constructor (the reference column of docs/specs.md)
REFERENCES = {
    "alexnet": lambda: torchvision.models.alexnet(),
    "vgg16": lambda: torchvision.models.vgg16(),
    "resnet34": lambda: torchvision.models.resnet34(),
    "resnet50": lambda: torchvision.models.resnet50(),
    "inception_v3": lambda: torchvision.models.inception_v3(aux_logits=True, init_weights=True),
    "densenet121": lambda: torchvision.models.densenet121(),
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(),
    "efficientnet_b1": lambda: torchvision.models.efficientnet_b1(),
}
# The rest of the shipped specs with a torchvision reference (tests/equivalence/test_zoo.py
# proves each equivalent): in the report with --zoo, or by name with --nets.
ZOO = {
    "vgg16_bn": lambda: torchvision.models.vgg16_bn(),
    "googlenet": lambda: torchvision.models.googlenet(aux_logits=True, init_weights=True),
    "resnext50_32x4d": lambda: torchvision.models.resnext50_32x4d(),
    "wide_resnet50_2": lambda: torchvision.models.wide_resnet50_2(),
    "regnet_x_400mf": lambda: torchvision.models.regnet_x_400mf(),
    "regnet_y_400mf": lambda: torchvision.models.regnet_y_400mf(),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(),
    "mobilenet_v3_large": lambda: torchvision.models.mobilenet_v3_large(),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(),
    "mnasnet1_0": lambda: torchvision.models.mnasnet1_0(),
    "squeezenet1_0": lambda: torchvision.models.squeezenet1_0(),
    "squeezenet1_1": lambda: torchvision.models.squeezenet1_1(),
    "convnext_tiny": lambda: torchvision.models.convnext_tiny(),
    "shufflenet_v2_x0_5": lambda: torchvision.models.shufflenet_v2_x0_5(),
    "shufflenet_v2_x1_0": lambda: torchvision.models.shufflenet_v2_x1_0(),
    "shufflenet_v2_x1_5": lambda: torchvision.models.shufflenet_v2_x1_5(),
    "shufflenet_v2_x2_0": lambda: torchvision.models.shufflenet_v2_x2_0(),
}

# Layer rows, not the block and group rows that hold them.
LEAF_TYPES = {k.torch_class.rsplit(".", 1)[1] for k in LAYERS.values()}

# --build-pairs: interleaved pairs per build figure (default 3 with --quick, else 7; 5 / 15 on meta).
BUILD_PAIRS: int | None = None

TARGETS = {
    "forward": 1.02,          # built / torchvision forward latency, at most
    "analysis": 50.0,         # fvcore / static analysis time, at least
    "front_end_ms": 10.0,     # resnet50 compile, at most
    "meta_vgg16_s": 0.2,      # VGG-16 build on meta, at most
    "cpu_build": 1.0,         # spec build / torchvision constructor on cpu, at most
}


def clock(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_of(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(clock(fn) for _ in range(repeats))


def interleaved(a, b, repeats: int, warmup: int = 1) -> tuple[float, float, float]:
    """(median a, median b, median of a/b per pair), alternating which runs first.

    ``interleaved.minima`` keeps min a / min b of the last call: on a shared
    machine the fastest run of each is the one least disturbed by others.
    """
    for _ in range(warmup):
        a(), b()
    ta, tb, ratios = [], [], []
    for i in range(repeats):
        if i % 2 == 0:
            x, y = clock(a), clock(b)
        else:
            y, x = clock(b), clock(a)
        ta.append(x)
        tb.append(y)
        ratios.append(x / y)
    interleaved.minima = min(ta) / min(tb)
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


def ms(s: float) -> str:
    return f"{s * 1e3:,.1f}" if s < 10 else f"{s * 1e3:,.0f}"


def table(head: list[str], rows: list[list[str]]) -> str:
    right = [i > 0 for i in range(len(head))]
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def generated_spec(layers: int) -> str:
    """A flat spec of ``layers`` layers: conv, batch norm and ReLU in turn."""
    kinds = ["conv2d(16, 3, padding = 1, bias = false)", "batchnorm2d", "relu(inplace = true)"]
    body = "\n".join("    " + kinds[i % 3] for i in range(layers))
    return f"network generated() {{\n    input [16, 8, 8]\n{body}\n}}\n"


def first_compile(path):
    """A compile of ``path`` as the first in a warm process: no cached AST, no memo."""
    parser._PARSED.clear()
    memo.clear()
    return netdsl.compile(path)


# ── (a) front end ───────────────────────────────────────────────────────────────

def bench_front_end(names, quick: bool, report: dict) -> str:
    first = clock(lambda: netdsl.compile(str(SPECS / "lenet5.net")))
    rows = []
    for name in names:
        path = str(SPECS / f"{name}.net")
        net = netdsl.compile(path)
        layers = sum(1 for r in analyse(net).rows if r.type in LEAF_TYPES)
        t = median_of(lambda path=path: first_compile(path), 5 if quick else 15)
        seen = median_of(lambda path=path: netdsl.compile(path), 5 if quick else 15)
        report.setdefault("front_end", {})[name] = t
        rows.append([name, f"{layers:,}", ms(t), f"{t / layers * 1e6:,.0f}", ms(seen)])
    part = table(["spec", "layers", "compile ms", "µs / layer", "compiled before ms"], rows)
    grow = []
    sizes = [100, 1_000, 10_000]
    for n in sizes:
        text = generated_spec(n)

        def reparsed(text=text):
            # The parser keeps the ASTs of small texts; linearity is about parsing too.
            parser._PARSED.clear()
            netdsl.compile(text)

        t = median_of(reparsed, 1 if n >= 10_000 else (3 if quick else 5),
                      warmup=0 if n >= 10_000 else 1)
        report.setdefault("generated", {})[n] = t
        grow.append([f"{n:,}", ms(t), f"{t / n * 1e6:,.0f}"])
    per = [report["generated"][n] / n for n in sizes]
    report["linearity"] = per[-1] / per[0]
    return (f"First compile in a process (loads the Lark parser once): {ms(first)} ms "
            f"(lenet5).\n\n{part}\n\nGenerated flat specs (conv / batch norm / ReLU in turn):\n\n"
            + table(["layers", "compile ms", "µs / layer"], grow)
            + "\n\n\"compile ms\" is a text's first compile in a warm process: the parser's "
            "AST cache and the checker's memo are emptied before each run. \"compiled before\" "
            "keeps both, as a second compile of the same text in one process (an editor, a "
            "sweep) finds them. The generated specs are parsed each time."
            + f"\n\nTime per layer at 10,000 layers / at 100 layers: {report['linearity']:.2f}")


# ── (b) build ───────────────────────────────────────────────────────────────────

def bench_build(names, quick: bool, report: dict) -> str:
    parts = []
    for device in ("cpu", "meta"):
        rows = []
        for name in names:
            path = str(SPECS / f"{name}.net")
            ref = {**REFERENCES, **ZOO}[name]
            net = netdsl.compile(path)

            def build(path=path, device=device):
                # The text's first build in this process: no cached AST, no memo, and
                # its module classes (their forwards written and compiled) made anew.
                parser._PARSED.clear()
                memo.clear()
                runtime._CLASSES.clear()
                netdsl.build(path, device=device)

            def build_again(path=path, device=device):
                netdsl.build(path, device=device)

            def lowering(net=net, device=device):
                lower(net, device=device)

            def theirs(ref=ref, device=device):
                with torch.device(device):
                    ref()

            try:
                theirs()
            except (NotImplementedError, RuntimeError) as e:  # RegNet reads a tensor's value
                rows.append([name, f"(torchvision cannot build it on {device}: {type(e).__name__})",
                             "", "", "", "", "", ""])
                continue
            reps = BUILD_PAIRS or ((3 if quick else 7) if device == "cpu" else (5 if quick else 15))
            a, b, r = interleaved(build, theirs, reps)
            m1 = interleaved.minima
            ag, b3, r3 = interleaved(build_again, theirs, reps)
            m3 = interleaved.minima
            lo, b2, r2 = interleaved(lowering, theirs, reps)
            m2 = interleaved.minima
            gc.collect()
            report.setdefault("build", {})[(name, device)] = (a, b, r)
            report.setdefault("lower", {})[(name, device)] = (lo, b2, r2)
            rows.append([name, ms(statistics.median([b, b2, b3])), ms(a), f"{m1:.2f} / {r:.2f}", ms(ag),
                         f"{m3:.2f} / {r3:.2f}", ms(lo), f"{m2:.2f} / {r2:.2f}"])
        parts.append(f"On {device}:\n\n" + table(
            ["spec", "torchvision ms", "netdsl.build ms", "ratio (min / median)", "built before ms", "ratio",
             "lower only ms", "ratio"], rows))
    return ("`netdsl.build` is the front end plus lowering, what a user calls, for a text "
            "this process has not built (the parser's AST cache, the checker's memo and the "
            "generated module classes emptied); \"built before\" keeps them, as a second build of the same spec does; "
            "\"lower only\" starts from the checked IR. torchvision on meta runs under "
            "`with torch.device(\"meta\")`. A ratio is the ratio of the minima (the runs least "
            "disturbed by other work), then the median of the per-pair ratios.\n\n" + "\n\n".join(parts))


# ── (c) forward ─────────────────────────────────────────────────────────────────

def bench_forward(names, quick: bool, report: dict) -> str:
    rows = []
    for name in names:
        net = netdsl.compile(str(SPECS / f"{name}.net"))
        ref = {**REFERENCES, **ZOO}[name]().eval()
        model = lower(net, device="cpu").eval()
        note = ""
        try:
            model.load_state_dict(ref.state_dict(), strict=True)
        except RuntimeError:
            note = " (own weights)"
        for batch in (1, 8):
            x = torch.randn(batch, *net.input_shape, generator=torch.Generator().manual_seed(0))

            def ours(model=model, x=x):
                with torch.no_grad():
                    model(x)

            def theirs(ref=ref, x=x):
                with torch.no_grad():
                    ref(x)

            heavy = batch == 8 and name in ("vgg16", "inception_v3", "densenet121")
            reps = (3 if quick else 7) if heavy else (5 if quick else 25)
            a, b, r = interleaved(ours, theirs, reps, warmup=1 if heavy else 2)
            rmin = interleaved.minima
            with torch.no_grad():
                diff = (model(x) - ref(x)).abs().max().item() if not note else float("nan")
            report.setdefault("forward", {})[(name, batch)] = (a, b, r)
            rows.append([name + note, str(batch), ms(b), ms(a), f"{r:.3f}", f"{rmin:.3f}",
                         f"{diff:.1e}"])
        del model, ref, ours, theirs  # the closures hold the models too
        gc.collect()
    return ("Same weights in both (torchvision's state_dict loaded into the built model); "
            "ratio is the median of per-pair ratios, the next column min / min.\n\n"
            + table(["spec", "batch", "torchvision ms", "netdsl ms", "ratio", "ratio of minima",
                     "max abs diff"], rows))


# ── (d) analysis ────────────────────────────────────────────────────────────────

def fvcore_total(model, shape) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis
        with torch.no_grad():
            fca = FlopCountAnalysis(model, torch.zeros(1, *shape))
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(fca.total())


def bench_analysis(names, quick: bool, report: dict) -> str:
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    fvcore_total(lower(netdsl.compile(str(SPECS / "lenet5.net"))).eval(), (1, 32, 32))  # warm the tracer
    rows = []
    for name in names:
        path = str(SPECS / f"{name}.net")
        net = netdsl.compile(path)
        model = lower(net, device="cpu").eval()
        static = analyse(net).macs
        counted = fvcore_total(model, net.input_shape)
        t_static = median_of(lambda net=net: analyse(net), 10 if quick else 50)
        t_check = median_of(lambda path=path: analyse(netdsl.compile(path)), 3 if quick else 9)
        t_fvcore = median_of(lambda model=model, net=net: fvcore_total(model, net.input_shape), 2 if quick else 3,
                             warmup=0)
        report.setdefault("analysis", {})[name] = (t_static, t_check, t_fvcore)
        rows.append([name, f"{static:,}", "yes" if static == counted else f"NO ({counted:,})",
                     ms(t_static), ms(t_check), ms(t_fvcore), f"{t_fvcore / t_static:,.0f}×",
                     f"{t_fvcore / t_check:,.1f}×"])
        del model
        gc.collect()
    return table(["spec", "MACs", "= fvcore", "analyse ms", "compile + analyse ms", "fvcore ms",
                  "fvcore / analyse", "fvcore / (compile + analyse)"], rows)


# ── summary ─────────────────────────────────────────────────────────────────────

def verdicts(report: dict, names) -> str:
    def ok(flag):
        return "met" if flag else "**not met**"

    lines = []
    fwd = report.get("forward", {})
    if fwd:
        worst = max(fwd.items(), key=lambda kv: kv[1][2])
        geo = statistics.geometric_mean(v[2] for v in fwd.values())
        lines.append(f"- forward ratio ≤ {TARGETS['forward']}: {ok(worst[1][2] <= TARGETS['forward'])} "
                     f"(worst {worst[1][2]:.3f}, {worst[0][0]} batch {worst[0][1]}; geometric mean "
                     f"of all {len(fwd)} ratios {geo:.3f})")
    an = report.get("analysis", {})
    if an:
        worst = min(an.items(), key=lambda kv: kv[1][2] / kv[1][0])
        r = worst[1][2] / worst[1][0]
        lines.append(f"- static analysis ≥ {TARGETS['analysis']:.0f}× faster than fvcore: "
                     f"{ok(r >= TARGETS['analysis'])} (slowest {r:,.0f}×, {worst[0]})")
    fe = report.get("front_end", {})
    if "resnet50" in fe:
        t = fe["resnet50"] * 1e3
        lines.append(f"- front end ≤ {TARGETS['front_end_ms']:.0f} ms for resnet50: "
                     f"{ok(t <= TARGETS['front_end_ms'])} ({t:.1f} ms)")
    if "linearity" in report:
        lin = report["linearity"]
        lines.append(f"- front end linear in size: {ok(lin <= 1.5)} (per-layer time at 10,000 "
                     f"layers is {lin:.2f}× that at 100)")
    b = report.get("build", {})
    if ("vgg16", "meta") in b:
        t = b[("vgg16", "meta")][0]
        lines.append(f"- meta build of VGG-16 ≤ {TARGETS['meta_vgg16_s']} s: "
                     f"{ok(t <= TARGETS['meta_vgg16_s'])} ({t:.3f} s)")
    for key, what in (("build", "netdsl.build"), ("lower", "lowering alone")):
        cpu = {k[0]: v for k, v in report.get(key, {}).items() if k[1] == "cpu"}
        if cpu:
            worst = max(cpu.items(), key=lambda kv: kv[1][2])
            lines.append(f"- cpu build within {TARGETS['cpu_build']}× of torchvision's constructor, "
                         f"{what}: {ok(worst[1][2] <= TARGETS['cpu_build'])} "
                         f"(worst {worst[1][2]:.2f}, {worst[0]})")
    return "\n".join(lines)


def machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"torchvision {torchvision.__version__}, Python {platform.python_version()}, "
            f"CUDA {'available' if torch.cuda.is_available() else 'not used'}; "
            f"load average {load[0]:.2f} at the start")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--only", metavar="SECTIONS", default="abcd",
                   help="run only these sections, e.g. --only ad")
    p.add_argument("--out", metavar="PATH", help="also write the markdown report to PATH")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch intra-op threads (default: torch's own choice); 1 keeps timings "
                        "steady on a machine other processes share")
    p.add_argument("--nets", nargs="+", metavar="NAME",
                   help="only these of the specs with a torchvision reference")
    p.add_argument("--zoo", action="store_true",
                   help="every shipped spec with a torchvision reference, not only the article's")
    p.add_argument("--build-pairs", type=int, metavar="N",
                   help="interleaved pairs per figure of section (b): more for a machine under load")
    args = p.parse_args(argv)
    global BUILD_PAIRS
    BUILD_PAIRS = args.build_pairs
    if args.threads:
        torch.set_num_threads(args.threads)
    os.chdir(ROOT)  # spec names in diagnostics are relative to the repository
    known = {**REFERENCES, **ZOO}
    pool = list(known) if args.zoo or args.nets else list(REFERENCES)
    names = [n for n in pool if (SPECS / f"{n}.net").exists() and (not args.nets or n in args.nets)]
    report: dict = {}
    parts = [f"# netdsl benchmark{' (--quick)' if args.quick else ''}\n",
             f"Machine: {machine()}.\n", f"Specs with a torchvision reference: {', '.join(names)}.\n"]
    sections = [("a", "(a) Front end: parse → checked IR", bench_front_end),
                ("b", "(b) Build: netdsl.build (front end + lowering) vs torchvision's constructor",
                 bench_build),
                ("c", "(c) Forward latency, eval mode, torch.no_grad()", bench_forward),
                ("d", "(d) Static analysis vs fvcore FlopCountAnalysis", bench_analysis)]
    start = time.perf_counter()
    for key, title, fn in sections:
        if key not in args.only:
            continue
        t = time.perf_counter()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        body = fn(names, args.quick, report)
        parts.append(f"## {title}\n\n{body}\n\n(load average {load:.2f} as this section began, "
                     f"{time.perf_counter() - t:.0f} s)\n")
        print(f"[{key} done in {time.perf_counter() - t:.0f} s]", file=sys.stderr, flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    parts.append(f"## Targets\n\n{verdicts(report, names)}\n")
    parts.append(f"Total {time.perf_counter() - start:.0f} s; load average {load:.2f} at the end.\n")
    text = "\n".join(parts)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
