"""Shape arithmetic the layer kinds share: formatting, torch's window formula,
and the rank checks. Each kind's own rule is its ``infer`` in
:mod:`netdsl.layers`; :func:`infer` looks it up.

Shapes have no batch dimension: ``[C, H, W]`` or ``[F]``. A rule that cannot
apply raises :class:`ShapeError`, which the checker turns into a diagnostic at
the layer's span.
"""

from __future__ import annotations

from typing import Any

from .base import LayerError as ShapeError

Shape = tuple[int, ...]


class Permuted(tuple):
    """A shape whose dimensions a ``permute`` reordered: ``order[i]`` is the
    dimension of the un-permuted ``[C, H, W]`` map that dimension i holds. The
    checker carries it from layer to layer (it compares equal to the plain tuple);
    the IR stores plain tuples. ``linear`` reads it: a channels-last map's last
    dimension is its features, as in ConvNeXt's blocks.

    >>> s = Permuted((8, 8, 3), order=(1, 2, 0))
    >>> s == (8, 8, 3), s.order
    (True, (1, 2, 0))
    """

    order: tuple[int, ...]

    def __new__(cls, dims, order):
        self = super().__new__(cls, dims)
        self.order = tuple(order)
        return self

    def __reduce__(self):
        return Permuted, (tuple(self), self.order)


def like(shape: Shape, out: Shape) -> Shape:
    """``out``, keeping ``shape``'s permutation when the rank stays the same: a layer
    that maps the last dimension (``linear``) keeps a channels-last map channels-last."""
    if isinstance(shape, Permuted) and len(out) == len(shape):
        return Permuted(out, shape.order)
    return tuple(out)


def fmt(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def need_image(kind: str, shape: Shape) -> None:
    if len(shape) != 3:
        help = None
        if len(shape) == 1:
            help = f"`{kind}` works on [C, H, W] feature maps; it cannot follow `flatten` or `linear`"
        elif len(shape) == 2:
            help = (f"`{kind}` works on [C, H, W] feature maps, and a 2-dimensional shape is a [C, L] "
                    "sequence: an image's `input` gives its channels too, as in `input [1, 28, 28]`")
        raise ShapeError("E0306", f"`{kind}` needs a [C, H, W] input", f"the input here is {fmt(shape)}",
                         help)


_need_image = need_image


def need_sequence(kind: str, shape: Shape) -> None:
    """E0306 unless ``shape`` is [C, L]: channels and one length, as ``conv1d`` takes."""
    if len(shape) != 2:
        help = (f"`{kind}` works on [C, L] sequences: `unflatten(0, [1, -1])` makes a [F] vector one "
                "channel of length F" if len(shape) == 1 else
                f"`{kind}` works on [C, L] sequences: `flatten(1)` makes a [C, H, W] map [C, H*W]")
        raise ShapeError("E0306", f"`{kind}` needs a [C, L] input", f"the input here is {fmt(shape)}", help)


def dim(kind: str, d: int, shape: Shape, arg: str = "dim") -> int:
    """Dimension ``d`` of a sample of ``shape`` (no batch: 0 is the channels; a negative
    one counts from the end), as an index from 0; E0219 where the input has none."""
    if not -len(shape) <= d < len(shape):
        torch_d = d - 1 if d > 0 else None
        also = (f"; torch's dim {d} is netdsl's {torch_d}" if torch_d is not None and torch_d < len(shape)
                else "")
        raise ShapeError("E0219", f"`{kind}` dimension {d} is out of range for a "
                         f"{len(shape)}-dimensional input", f"the input here is {fmt(shape)}",
                         f"use a dim between {-len(shape)} and {len(shape) - 1} (without the "
                         f"batch dimension: 0 is the channels{also})", arg=arg)
    return d % len(shape)


def window(kind: str, size: int, k: int, s: int, p: int, d: int, ceil: bool, axis: str) -> int:
    """Output size along one axis, as torch computes it (``pooling_output_shape``
    for pools; convolution is the same without ``ceil_mode``)."""
    eff = d * (k - 1) + 1
    out = (size + 2 * p - eff + ((s - 1) if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1  # torch: the last window must start inside the input or its left padding
    pool = kind not in ("conv2d", "conv1d", "std_conv2d")
    if (pool and out < 1) or (not pool and size + 2 * p < eff):
        code = "E0305" if pool else "E0304"
        pad = f" plus padding {p}" if p else ""
        what = "pooling window" if pool else "kernel"
        msg = (f"the spatial size reaches zero: `{kind}` window {eff} is larger than its input {size}{pad}"
               if pool else f"kernel larger than its input: {eff} > {size}{pad} ({axis})")
        raise ShapeError(code, msg, f"{what} {eff} on an input of {axis} {size}{pad}",
                         "make the input larger (see `input`), or use a smaller kernel, "
                         "more padding or fewer downsampling layers before this one",
                         arg="kernel_size")
    if pool and d > 1:
        _window_in_padding(kind, size, k, s, p, d, out, axis)
    return out


def _window_in_padding(kind: str, size: int, k: int, s: int, p: int, d: int, out: int,
                       axis: str) -> None:
    """E0328 where a dilated pooling window sees only padding: torch's max pool then
    gives -inf, which the next layer turns into inf or NaN.

    A window that starts inside the input covers its first element, so only those
    starting in the left padding can miss the input, at most ``p`` of them.

    >>> try:
    ...     _window_in_padding("maxpool2d", 2, 2, 1, 1, 3, 1, "height")
    ... except ShapeError as e:
    ...     print(e.code)
    E0328
    """
    for o in range(min(out, -(-p // s))):
        start = o * s - p
        first = -(start // d)  # the first tap at or right of the input's start
        if first >= k or start + first * d >= size:
            taps = ", ".join(str(start + j * d) for j in range(k))
            raise ShapeError(
                "E0328", f"a `{kind}` window sees only padding: its output would be -inf",
                f"window {o} of the {axis} reads positions {taps} of an input of {size}",
                "use a smaller dilation or padding, or a larger input, so that every window "
                "reaches the input", arg="dilation")


def spatial(kind: str, a: dict, shape: Shape) -> tuple[int, int]:
    """Output height and width of a windowed layer (convolution or pooling)."""
    (kh, kw), (sh, sw), (ph, pw) = a["kernel_size"], a["stride"], a["padding"]
    dh, dw = a.get("dilation", (1, 1))
    ceil = a.get("ceil_mode", False)
    if kind not in ("conv2d", "std_conv2d"):
        for p, k in ((ph, kh), (pw, kw)):
            # torch compares the padding with the window as written, not the dilated one.
            if p > k // 2:
                raise ShapeError("E0204", f"`{kind}` padding {p} is more than half its window {k}",
                                 "padding too large",
                                 f"pooling padding must be at most half the kernel size ({k // 2} "
                                 f"for a window of {k}, whatever the dilation)", arg="padding")
    return (window(kind, shape[1], kh, sh, ph, dh, ceil, "height"),
            window(kind, shape[2], kw, sw, pw, dw, ceil, "width"))


def divides(what: str, g: int, c: int, out: int | None = None, arg: str = "groups") -> None:
    """E0307 unless ``g`` divides ``c`` (the input channels) and ``out`` (the output's)."""
    for n, which in ((c, "input"), (out, "output")):
        if n is not None and n % g:
            both = f"both {c} and {out}" if out is not None else f"{c}"
            raise ShapeError("E0307", f"{what}={g} does not divide the {which} channels ({n})",
                             f"{n} channels in {g} groups",
                             f"use {'a number of groups' if what == 'groups' else f'a `{what}`'} that "
                             f"divides {both}", arg=arg)


def infer(kind: str, args: dict[str, Any], shape: Shape) -> tuple[dict[str, Any], Shape]:
    """Inferred fields and the output shape of layer ``kind`` on ``shape``.

    >>> infer("conv2d", {"out_channels": 64, "kernel_size": (7, 7), "stride": (2, 2),
    ...                  "padding": (3, 3), "dilation": (1, 1), "groups": 1}, (3, 224, 224))
    ({'in_channels': 3}, (64, 112, 112))
    """
    from . import LAYERS
    return LAYERS[kind].infer(args, shape)
