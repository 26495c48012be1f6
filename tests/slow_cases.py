"""Marking the cases of a parametrized test slow, all but a few. A test that walks
every shipped network runs them all in the full suite, and its small cases in the
fast subset (``pytest -m "not slow"``), so that the fast subset still goes through
its code::

    @pytest.mark.parametrize("name", slow_except(SPECS))      # lenet5 stays fast
"""

from pathlib import Path

import pytest

_ParameterSet = type(pytest.param(None))


def slow_except(values, fast=("lenet5",)):
    """``values`` as parameters marked ``slow``, except those whose name is in ``fast``.

    A value's name is the stem of its first item (``"lenet5.net"``, a path or
    ``"lenet5"`` all name lenet5); a tuple is the arguments of one case, and a
    ``pytest.param`` keeps its id and marks.
    """
    out = []
    for v in values:
        if isinstance(v, _ParameterSet):
            args, marks, id_ = tuple(v.values), list(v.marks), v.id
        else:
            args, marks, id_ = (v if isinstance(v, tuple) else (v,)), [], None
        if Path(str(args[0])).stem not in fast:
            marks.append(pytest.mark.slow)
        out.append(pytest.param(*args, marks=marks, id=id_))
    return out
