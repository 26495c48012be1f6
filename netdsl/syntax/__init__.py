"""Syntax: spec text to AST. The grammar (``grammar.lark``), the AST nodes
(``ast``), the parser that builds them (``parser``, with the lean LALR driver in
``lalr``), the loader that resolves imports into a ``Program`` (``loader``) and
reports each file it looks at to an observer (``observer``), and the canonical
layout (``fmt``). Nothing here evaluates an expression or knows a layer's
arguments: a syntactically valid spec may still be wrong, and ``check`` says how.
"""
