"""Train a netdsl spec with PyTorch's own distributed engine: torchrun, DDP or FSDP2.

    torchrun --nproc_per_node 2 examples/train.py specs/lenet5.net --steps 50
    torchrun --nproc_per_node 2 examples/train.py specs/resnet.net --set depth=18 \\
        --input 3,32,32 --set num_classes=10 --fsdp --steps 20
    python examples/train.py specs/lenet5.net          # one process, no torchrun

The data are synthetic and need no download: noisy copies of one fixed random
image per class, so the loss has something to learn and falls within a few steps.
Each rank reads its own shard (DistributedSampler). The backend
is NCCL when CUDA is available (each rank on its own GPU) and gloo otherwise.

``--fsdp`` shards the model with FSDP2 (``torch.distributed.fsdp.fully_shard``):
each top-level block that holds parameters is one unit, the root another.
Otherwise the model is wrapped in ``DistributedDataParallel``.

Rank 0 shows progress (tqdm when it is installed, else a line on stderr) and
writes the checkpoint with netdsl's atomic writer (``netdsl.backend.checkpoint.save``):
a complete file or none, never half of one. With ``--hash-dir`` every rank also
writes a hash of its parameters and its losses there, which is how the test
checks that the replicas stay equal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import netdsl
from netdsl.backend.checkpoint import SaveError, check_target, save


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", help="a .net spec")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                    help="a network hyperparameter, as for netdsl build")
    ap.add_argument("--input", metavar="C,H,W", help="train at this input shape")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=16, help="per process")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--samples", type=int, default=512, help="size of the synthetic data set")
    ap.add_argument("--classes", type=int, default=10,
                    help="classes of the synthetic labels (at most the network's outputs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fsdp", action="store_true", help="shard with FSDP2 instead of DDP")
    ap.add_argument("--checkpoint", default="checkpoint.pt",
                    help="written by rank 0 at the end (its folder is made if missing)")
    ap.add_argument("--hash-dir", help="each rank writes rank<N>.json: its parameter hash and losses "
                                       "(the folder is made if missing)")
    ap.add_argument("--output", metavar="NAME",
                    help="the output that feeds the loss, for a network of several outputs: a key of "
                         "its `output dict(...)`, a field of `output namedtuple(...)`, or a position "
                         "(default: the first output; the main one where side heads run in training)")
    return ap.parse_args(argv)


def prepare_files(args) -> Path | None:
    """Make the folders the run writes into and check the checkpoint's target, before
    any training: a mistake there costs nothing yet. Rank 0's target, else None."""
    Path(args.checkpoint).parent.mkdir(parents=True, exist_ok=True)
    try:
        return check_target(args.checkpoint, force=True, flag="--checkpoint")
    except SaveError as e:
        sys.exit(f"train.py: error: {e}")


def pick_output(out, name: str | None):
    """The tensor that feeds the loss, from what the model returned (``--output``)."""
    if isinstance(out, torch.Tensor):
        if name is not None:
            sys.exit(f"train.py: error: --output {name}: the network has one output")
        return out
    if isinstance(out, dict):
        if name is None:
            return next(iter(out.values()))
        if name not in out:
            sys.exit(f"train.py: error: --output {name}: the outputs are {', '.join(out)}")
        return out[name]
    fields = getattr(out, "_fields", None)
    if name is None:
        return out[0]
    if fields is not None and name in fields:
        return getattr(out, name)
    if name.isdigit() and int(name) < len(out):
        return out[int(name)]
    what = ", ".join(fields) if fields else f"positions 0 to {len(out) - 1}"
    sys.exit(f"train.py: error: --output {name}: the outputs are {what}")


def setup() -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes; one process without torchrun."""
    if "RANK" not in os.environ:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def synthetic_data(shape, classes: int, samples: int, seed: int) -> TensorDataset:
    """Noisy copies of one fixed random image per class: learnable in a few steps,
    and the same on every rank."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(classes, *shape, generator=g)
    y = torch.randint(0, classes, (samples,), generator=g)
    x = prototypes[y] + 0.5 * torch.randn(samples, *shape, generator=g)
    return TensorDataset(x, y)


def shard(model: nn.Module, device: torch.device) -> nn.Module:
    """FSDP2: each top-level child that holds parameters is a unit, then the root."""
    from torch.distributed.fsdp import fully_shard

    for child in model.children():
        if next(child.parameters(), None) is not None:
            fully_shard(child)
    fully_shard(model)
    return model


def param_hash(model: nn.Module) -> str:
    """A hash of the full parameters, gathered where FSDP shards them. Buffers are left
    out: batch-norm running statistics are each rank's own under FSDP (DDP broadcasts
    rank 0's), and they are not what the optimiser keeps in step."""
    h = hashlib.sha256()
    for name, value in sorted(model.named_parameters()):
        if hasattr(value, "full_tensor"):  # a DTensor shard of FSDP2
            value = value.full_tensor()
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Progress:
    """tqdm where it is installed, else one line on stderr that rewrites itself."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.bar = total, enabled, None
        self.start = time.perf_counter()
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, desc="train", file=sys.stderr)

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")
            return
        rate = step / max(time.perf_counter() - self.start, 1e-9)
        end = "\n" if step == self.total else ""
        print(f"\rstep {step}/{self.total}  loss {loss:.4f}  {rate:.1f} steps/s", end=end,
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    rank, world, device = setup()
    target = prepare_files(args) if rank == 0 else None
    if args.hash_dir:  # every rank writes there at the end: made now, not after training
        Path(args.hash_dir).mkdir(parents=True, exist_ok=True)
    overrides = {}
    for item in args.overrides:
        name, _, value = item.partition("=")
        overrides[name.strip()] = value.strip()
    shape = tuple(int(v) for v in args.input.split(",")) if args.input else None

    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = netdsl.build(args.spec, input=shape, device=device, **overrides)
    data = synthetic_data(model.input_shape, args.classes, args.samples, args.seed)
    if world > 1:
        model = shard(model, device) if args.fsdp else nn.parallel.DistributedDataParallel(model)
    sampler = DistributedSampler(data, world, rank, seed=args.seed) if world > 1 else None
    loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler, shuffle=sampler is None,
                        drop_last=True)
    optimiser = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    model.train()
    losses, step, epoch = [], 0, 0
    progress = Progress(args.steps, rank == 0)
    while step < args.steps:
        if sampler is not None:
            sampler.set_epoch(epoch)
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            # One output feeds the loss: --output, else the first (the main one, where side
            # heads run in training, as Inception v3's aux head does).
            full = model(x)
            out = pick_output(full, args.output)
            if out.ndim != 2:  # the synthetic labels are classes: the loss needs [N, classes]
                names = list(full) if isinstance(full, dict) else list(getattr(full, "_fields", ()))
                sys.exit(f"train.py: error: the output that feeds the loss is {list(out.shape)}, not "
                         f"[N, classes]; choose one with --output NAME" +
                         (f" ({', '.join(names)})" if names else ""))
            loss = loss_fn(out, y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            losses.append(loss.item())
            progress.update(step, losses[-1])
            if step == args.steps:
                break
        epoch += 1
    progress.close()

    digest = param_hash(model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model)
    state = (model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model).state_dict()
    if args.fsdp and world > 1:
        state = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in state.items()}
    if rank == 0:
        save({k: v.cpu() for k, v in state.items()}, args.checkpoint, target, flag="--checkpoint")
        print(f"rank 0: {step} steps on {world} process(es), loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
              f"checkpoint {args.checkpoint}", file=sys.stderr)
    if args.hash_dir:
        Path(args.hash_dir, f"rank{rank}.json").write_text(json.dumps({"hash": digest, "losses": losses}))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
