"""netdsl: a declarative language for convolutional networks, and its compiler.

>>> import netdsl
>>> model = netdsl.build("network tiny() { input [1, 28, 28]\\n conv2d(4, 5)\\n relu\\n flatten\\n linear(10) }")
>>> type(model).__name__
'Tiny'
"""

from .api import build, compile, parse
from .diagnostics import Diagnostic, NetdslError
from .limits import Limits

__all__ = ["build", "compile", "parse", "Diagnostic", "NetdslError", "Limits"]
__version__ = "0.1.0"
