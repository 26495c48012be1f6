"""Backend: checked IR to a ``torch.nn.Module``. ``lower`` builds the module tree
and initialises it, ``codegen`` writes its forward as Python source (also what
``netdsl export --format python`` prints), ``runtime`` holds the base classes and
helpers a built model uses, ``fuse`` folds batch norms for inference, ``onnx``
exports to ONNX and ``checkpoint`` reads and writes weights safely. It never sees an
invalid IR: an exception here is a bug in netdsl.
"""
