"""Collection for the whole repository (tests/conftest.py holds the fixtures)."""

import importlib.util

# The language server needs the optional `lsp` extra; without it, its module
# cannot be imported for its doctests, and tests/tools/test_lsp.py skips.
collect_ignore = [] if importlib.util.find_spec("pygls") else ["netdsl/tools/lsp.py"]
