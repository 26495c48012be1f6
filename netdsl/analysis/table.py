"""Rendering an analysis as the per-layer table or as JSON."""

from __future__ import annotations

from ..diagnostics import escape
from .counts import Analysis, fmt_bytes


def _n(x: int) -> str:
    return f"{x:,}"


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:g}"


def visible(a: Analysis, depth: int | None):
    return [r for r in a.rows if depth is None or r.depth < depth]


def render_table(a: Analysis, depth: int | None = 2, fvcore_total: int | None = None,
                 note: str | None = None) -> str:
    """The layer table: one row per module down to ``depth`` (1 = top level only)."""
    rows = visible(a, depth)
    head = ("name", "type", "output shape", "params", "MACs")
    body = []
    for r in rows:
        # A dotted label's container holds modules but is never called: no output.
        shape = "[" + ", ".join(str(d) for d in r.output_shape) + "]" if r.output_shape else "—"
        macs = _n(r.macs) if (r.counted or r.macs) else "—"
        # A label may hold any character: escaped, it cannot drive the terminal.
        body.append(("  " * r.depth + escape(r.name),
                     escape(r.type), shape, _n(r.params), macs))
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) if body else len(head[i])
              for i in range(5)]
    right = (False, False, False, True, True)

    def line(cells):
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)).rstrip()

    out = [f"{a.network}: {_ends(a)}", "", line(head),
           line(tuple("─" * w for w in widths))]
    out += [line(b) for b in body]
    out.append(line(tuple("─" * w for w in widths)))
    hidden = len(a.rows) - len(rows)
    out.append(f"modules:      {len(a.rows):,}" + (f" ({hidden:,} deeper ones folded into their "
                                                   f"parent's row; --depth N to show more)" if hidden else ""))
    out.append(f"params:       {_n(a.params)} ({_si(a.params)})")
    out.append(f"MACs:         {_n(a.macs)} ({_si(a.macs)}MAC, = FLOPs / 2, batch 1, eval mode)")
    out.append(f"trainable:    {_n(a.trainable_params)} params (non-trainable: {_n(a.non_trainable_params)})")
    out.append(f"input size:   {_n(a.input_bytes)} B ({fmt_bytes(a.input_bytes)}, batch 1)")
    out.append(f"params size:  {_n(a.param_bytes)} B ({fmt_bytes(a.param_bytes)}, float32)")
    out.append(f"activations:  {_n(a.activation_bytes)} B ({fmt_bytes(a.activation_bytes)}, "
               "forward/backward pass size as torchinfo counts it, batch 1)")
    out.append(f"total size:   {_n(a.total_bytes)} B ({fmt_bytes(a.total_bytes)}, input + params + "
               "activations: torchinfo's estimated total size)")
    out.append(f"largest:      {_n(a.largest_activation_bytes)} B "
               f"({fmt_bytes(a.largest_activation_bytes)}, one tensor, at {a.largest_activation})")
    if fvcore_total is not None:
        out.append(f"fvcore total: {_n(fvcore_total)} (FlopCountAnalysis, counts one multiply-add as one flop)")
    if note:
        out.append(note)
    out.append("— : fvcore counts no MACs for this op (activations, max/avg pooling, dropout, "
               "add, concat, mul)")
    return "\n".join(out)


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _ends(a: Analysis) -> str:
    """The table's first line: what goes in and what comes out, by name where named."""
    ins = (f"input {_shape(a.input)}" if not a.inputs else
           "inputs " + ", ".join(f"{k} {_shape(s)}" for k, s in a.inputs.items()))
    outs = (_shape(a.output_shape) if not a.outputs else
            "outputs " + ", ".join(f"{k} {_shape(s)}" for k, s in a.outputs.items()))
    return f"{ins} → {outs}"


def to_json(a: Analysis, depth: int | None = None, **extra) -> dict:
    d = {
        "network": a.network,
        "input": list(a.input),
        "output_shape": list(a.output_shape),
        "params": a.params,
        "trainable_params": a.trainable_params,
        "non_trainable_params": a.non_trainable_params,
        "macs": a.macs,
        "flops": a.flops,
        "input_bytes": a.input_bytes,
        "param_bytes": a.param_bytes,
        "activation_bytes": a.activation_bytes,
        "total_bytes": a.total_bytes,
        "largest_activation_bytes": a.largest_activation_bytes,
        "largest_activation": a.largest_activation,
    }
    if a.inputs:
        d["inputs"] = {k: list(s) for k, s in a.inputs.items()}
    if a.outputs:
        d["outputs"] = {k: list(s) for k, s in a.outputs.items()}
    d.update(extra)
    d["layers"] = [{k: v for k, v in r.to_dict().items()} for r in visible(a, depth)]
    return d
