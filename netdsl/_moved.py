"""Where netdsl's modules were before its packages were arranged by stage, so that
whatever imported them then — users' code, and whole models pickled by netdsl
0.1.0 (``torch.save(model)`` records ``netdsl.modules.Block``) — imports them now.

An old name is an alias: ``import netdsl.lower`` gives the module
``netdsl.backend.lower`` itself, one object under two names, so state set
through one is seen through the other. New code should use the new names
(docs/architecture.md lists the packages).

>>> import netdsl.lower, netdsl.backend.lower
>>> netdsl.lower is netdsl.backend.lower
True
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: Old module name → the module that holds it now.
MOVED: dict[str, str] = {
    "netdsl.ast": "netdsl.syntax.ast",
    "netdsl.parser": "netdsl.syntax.parser",
    "netdsl.lalr": "netdsl.syntax.lalr",
    "netdsl.loader": "netdsl.syntax.loader",
    "netdsl.fmt": "netdsl.syntax.fmt",
    "netdsl.elaborate": "netdsl.check.checker",
    "netdsl.calls": "netdsl.check.calls",
    "netdsl.combinators": "netdsl.check.combinators",
    "netdsl.dataflow": "netdsl.check.dataflow",
    "netdsl.evaluate": "netdsl.check.evaluate",
    "netdsl.flows": "netdsl.check.flows",
    "netdsl.memo": "netdsl.check.memo",
    "netdsl.reserved": "netdsl.check.reserved",
    "netdsl.values": "netdsl.check.values",
    "netdsl.shapes": "netdsl.layers.shapes",
    "netdsl.layers.shape": "netdsl.layers.reshape",
    "netdsl.lower": "netdsl.backend.lower",
    "netdsl.modules": "netdsl.backend.legacy",
    "netdsl.pysource": "netdsl.backend.codegen",
    "netdsl.fuse": "netdsl.backend.fuse",
    "netdsl.onnx_export": "netdsl.backend.onnx",
    "netdsl.checkpoint": "netdsl.backend.checkpoint",
    "netdsl.table": "netdsl.analysis.table",
    "netdsl.diff": "netdsl.analysis.diff",
    "netdsl.graph": "netdsl.analysis.graph",
    "netdsl.compare": "netdsl.analysis.compare",
    "netdsl.sweep": "netdsl.tools.sweep",
    "netdsl.ide": "netdsl.tools.ide",
    "netdsl.lsp": "netdsl.tools.lsp",
    "netdsl.checkcache": "netdsl.cli.checkcache",
    "netdsl.status": "netdsl.cli.status",
    "netdsl.files": "netdsl.cli.files",
    "netdsl.commands": "netdsl.cli",
    "netdsl.commands.graph": "netdsl.cli.graph",
    "netdsl.commands.diff": "netdsl.cli.diff",
    "netdsl.commands.verify": "netdsl.cli.verify",
    "netdsl.commands.export": "netdsl.cli.export",
    "netdsl.commands.sweep": "netdsl.cli.sweep",
    "netdsl.commands.fmt": "netdsl.cli.fmt",
    "netdsl.catalogue": "netdsl.codes",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and loads it as the module that holds it now."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass  # the module it stands for has run already


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
