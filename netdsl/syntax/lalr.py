"""How Lark's LALR parser is set up for speed: its tables kept between
processes, the reductions that only pass a child on made free, and a lean driver
(:class:`LeanParser`) that runs Lark's table and builds the AST as it parses.

Tables. Building the tables from ``grammar.lark`` takes about a quarter of a second, in
every process; loading them back takes about ten milliseconds. They are kept in
netdsl's cache directory (:mod:`netdsl.cachedir`), under a name made of a hash of
the grammar, the options, Lark's version and Python's, as Lark's own serialized
form (``Lark.memo_serialize``: dicts, lists, strings and numbers) written with
``marshal``. Lark's own ``cache=`` is not used: it unpickles the file before it
checks anything, so a planted file would run code. Here a file is read only after
the cache directory's owner check and its MAC (this user's key) verify it; a
missing, stale, foreign or broken file means the tables are built again. The
grammar file stays the only source, and an edit to it takes effect at once.

Why not a standalone parser generated at build time: the package is installed
editable while the grammar changes, and a generated module beside the grammar
would be a second source that goes stale silently.

Why a driver of its own rather than Lark's supported ``Lark(..., transformer=...)``:
measured side by side (``bench/parse.py``, docs/benchmarks.md), text to AST with the
same spans, Lark's transformer path is 3.1-4.3x slower than this driver, and no faster
than the tree path; even Lark's bare parse, with no positions and no AST, is 1.5-1.9x
slower. Lark gives an inline transformer no ``meta`` and propagates positions only into
``Tree`` results, so that path must still make a tree node per reduction for the spans.
The price is reading Lark's internals: a Lark whose internals differ makes
``tests/syntax/test_lalr.py`` fail, naming what changed, while netdsl parses on by the tree path.
"""

from __future__ import annotations

import marshal
import sys
from typing import Any

# The largest table file read back (the tables are about 140 kB).
MAX_TABLE_BYTES = 8 * 2**20
# Options that hold objects, not data: given again when the tables are loaded.
_OBJECT_OPTIONS = ("postlex",)


def tables_name(grammar: str, options: dict) -> str:
    """The cache file name of the tables of ``grammar`` built with ``options``, by
    hash, so checkouts with different grammars share a directory without fighting.

    >>> tables_name("start: 'a'", {}) != tables_name("start: 'b'", {})
    True
    """
    import hashlib  # here, not above: the check cache reads cachedir and needs no OpenSSL

    import lark

    key = hashlib.sha256(
        f"{grammar}\0{sorted(options.items())!r}\0{lark.__version__}\0{sys.version_info[:2]}"
        .encode()).hexdigest()[:20]
    return f"lark-{key}.tables"


def build_lark(grammar: str, postlex, options: dict):
    """``Lark(grammar, postlex=postlex, **options)``, its tables loaded from the cache
    directory when a verified copy is there, else built and stored. Returns the
    parser and whether the tables came from the cache.

    >>> import os; os.environ["NETDSL_CACHE_DIR"] = ""
    >>> lark, cached = build_lark('start: "a"', None, {"parser": "lalr"})
    >>> str(lark.parse("a").data), cached
    ('start', False)
    >>> del os.environ["NETDSL_CACHE_DIR"]
    """
    from lark import Lark
    from lark.grammar import Rule
    from lark.lexer import TerminalDef

    from ..cachedir import open_cache

    cache = open_cache()
    name = tables_name(grammar, options)
    data = cache.read(name, MAX_TABLE_BYTES) if cache is not None else None
    if data is not None:
        # Verified as written by this user's netdsl for this grammar, Lark and Python:
        # a failure to load it is a bug (tests/syntax/test_lalr.py), not a reason to rebuild.
        tables = marshal.loads(data)
        return Lark._load_from_dict(tables["data"], tables["memo"], postlex=postlex), True
    lark = Lark(grammar, postlex=postlex, **options)
    if cache is not None:
        table, memo = lark.memo_serialize([TerminalDef, Rule])
        table["options"] = {k: v for k, v in table["options"].items() if k not in _OBJECT_OPTIONS}
        cache.write(name, marshal.dumps({"data": table, "memo": memo}))
    return lark, False


def skip_unit_reductions(lark) -> int:
    """Make each reduction that only hands its one child up return it directly.

    The expression rules are a precedence ladder (``?expr: ifexp``, ``?ifexp:
    or_expr``, ... ``?postfix: atom``), so a plain ``16`` is reduced ten times on
    its way up, and Lark runs each through its tree-building wrappers (child
    filter, single-child expansion, position propagation): that was a third of
    the front end's time. For a ``?rule`` whose expansion is one kept symbol, the
    wrappers return that child unchanged with its positions as they were, so a
    function that returns it is the same parse. Returns how many rules it changed;
    on a Lark without the attribute this relies on, it changes none.

    >>> from netdsl.syntax.parser import _lark
    >>> skip_unit_reductions(_lark()) > 10
    True
    """
    callbacks = getattr(lark, "_callbacks", None)
    if not isinstance(callbacks, dict) or lark.options.keep_all_tokens:
        return 0
    changed = 0
    for rule in list(callbacks):
        opts = rule.options
        if not opts.expand1 or rule.alias or len(rule.expansion) != 1 or any(opts.empty_indices or ()):
            continue
        (sym,) = rule.expansion
        if sym.name.startswith("_") or (sym.is_term and sym.filter_out):
            continue  # an inlined rule or a dropped token: the wrappers do change these
        callbacks[rule] = _first
        changed += 1
    return changed


def _first(children):
    return children[0]


class Unsupported(Exception):
    """The Lark in use is not the one :class:`LeanParser` was written against."""


class Declined(Exception):
    """The text has a syntax error or nests too deep: the plain path says which."""


class _Node:
    """A reduced rule on the stack, in place of Lark's ``Tree``: its value (an AST
    node, or the children list of an inlined ``_rule``), where it lies (Lark's
    ``container`` positions, which are the rule's own until ``?rule: "(" x ")"``
    widens them) and how many nesting rules it holds. It is also the ``meta`` the
    builder's rule methods read."""

    __slots__ = ("value", "line", "column", "end_line", "end_column", "empty", "depth")
    value: Any
    line: int | None
    column: int | None
    end_line: int | None
    end_column: int | None
    empty: bool
    depth: int


# How a rule's reduction is done (_Rule.kind).
_PASS, _INLINE, _BUILD, _EXPAND = range(4)


class _Rule:
    """What one grammar rule does at its reduction, worked out once from Lark's rule."""

    __slots__ = ("kind", "size", "origin", "keep", "trailing", "method", "nests", "pure", "indices",
                 "whole")
    # The builder's rule method; None only for the kinds that never call one (_PASS, _INLINE,
    # an _EXPAND of one child).
    method: Any

    def __init__(self, rule, methods: dict, nests: frozenset):
        opts = rule.options
        if opts.keep_all_tokens or opts.expand1 and rule.origin.name.startswith("_"):
            raise Unsupported(f"options of {rule.origin.name}")
        exp = rule.expansion
        self.size = len(exp)
        self.origin = rule.origin.name
        name = rule.alias or getattr(opts, "template_source", None) or self.origin
        # Which children Lark's ChildFilterLALR keeps, as (index, splice, Nones before it),
        # and the Nones of maybe_placeholders after the last one.
        empty = list(opts.empty_indices or ())
        if empty:
            if empty.count(False) != len(exp):
                raise Unsupported("empty_indices")
            s = "".join(str(int(b)) for b in empty)
            nones = [len(ones) for ones in s.split("0")]
        else:
            nones = [0] * (len(exp) + 1)
        keep, pending = [], 0
        for i, sym in enumerate(exp):
            pending += nones[i]
            if not (sym.is_term and sym.filter_out):
                keep.append((i, not sym.is_term and sym.name.startswith("_"), pending))
                pending = 0
        self.keep = tuple(keep)
        self.trailing = pending + nones[len(exp)]  # Nones appended at the end
        # No splice and no placeholder: the kept children are raw[i] for i in indices,
        # or raw itself where every child is kept.
        self.pure = not any(s or n for _, s, n in keep) and not self.trailing
        self.indices = tuple(i for i, _, _ in keep)
        self.whole = self.pure and self.indices == tuple(range(self.size))
        self.method = methods.get(name)
        self.nests = name in nests
        # Exactly one child kept, and no placeholder: ExpandSingleChild always applies.
        unit = len(keep) == 1 and not keep[0][1] and not keep[0][2] and not self.trailing
        if opts.expand1 and not rule.alias and unit and self.size == 1:
            self.kind = _PASS  # `?a: b`: b as it is, positions and all
        elif opts.expand1 and not rule.alias:
            self.kind = _EXPAND  # `?a: "(" b ")"`: b, its positions widened to the parentheses
            if self.method is None and not unit:
                raise Unsupported(f"no builder method for {name}")  # it may build a node
        elif self.origin.startswith("_"):
            # `_a: _b` hands the same children up; any other `_rule` is spliced into its parent.
            passes = self.size == 1 and len(keep) == 1 and keep[0][1] and not keep[0][2] and not self.trailing
            self.kind = _PASS if passes else _INLINE
        elif self.method is not None:
            self.kind = _BUILD
        else:
            raise Unsupported(f"no builder method for {name}")


class LeanParser:
    """Lark's own LALR table, driven without Lark's trees.

    Why: a warm ``netdsl.compile`` spent two thirds of its time in Lark's parse
    (its lexer makes each token through several calls, its tree builder wraps
    every reduction in four, then the AST builder walks the finished tree again
    and ``_check_depth`` a third time). This driver reads the same table and the
    same per-state lexers, and at each reduction calls the AST builder's rule
    method at once with the children and positions Lark's tree builder would
    have given it (``propagate_positions``, ``maybe_placeholders``, inlined
    ``_rules``, ``?rules``), tracking nesting depth as it goes. The grammar file
    stays the only source: the table is Lark's, built and cached by Lark.

    It gives an AST only for a text Lark parses without error and that nests no
    deeper than allowed; for anything else it raises :class:`Declined` and the
    caller runs the plain path (Lark's parse, then the builder), whose
    diagnostics are the ones users see. ``tests/syntax/test_lalr.py`` compares the two
    paths, spans included, on every shipped file and on generated specs.

    What it relies on in Lark (written against 1.3), checked when it is built;
    where any of it is missing or different it raises :class:`Unsupported` and
    the plain path is used for every text, and
    ``tests/syntax/test_lalr.py::test_the_installed_lark_is_the_one_the_lean_driver_knows``
    fails (so does every differential test where the driver declines a valid text):

    - ``lark.parser.parser.parser.parse_table``: ``states`` (state → terminal or
      rule name → ``(Shift, state)`` or ``(Reduce, rule)``), ``start_states``,
      ``end_states``; rules with ``origin``, ``expansion``, ``alias`` and
      ``options`` (``expand1``, ``keep_all_tokens``, ``empty_indices``);
    - ``lark.parser.lexer``: a ``PostLexConnector`` of a ``ContextualLexer``
      whose ``lexers`` (state → ``BasicLexer``) have ``scanner._mres``,
      ``callback`` (only ``UnlessCallback``), ``ignore_types`` and
      ``newline_types``; the post-lexer states the paren rule it applies
      (``opens``, ``closes``, ``dropped``) and this driver applies the same;
      ``Token``'s slots. A state's scanner is read on first use: one of another
      form declines that text rather than the whole driver;
    - the tree builder's rules (``parse_tree_builder.py``), which are restated
      here, not read: children kept as ``ChildFilterLALR`` keeps them (with
      ``maybe_placeholders``' Nones), ``ExpandSingleChild``, positions as
      ``PropagatePositions`` gives them (a node spans its first to its last
      child that has a position, parentheses of ``?rule: "(" x ")"`` included).
      The differential tests pin these.

    >>> from netdsl.syntax.parser import _lean
    >>> _lean() is not None
    True
    """

    def __init__(self, lark, methods: dict, nests: frozenset):
        from lark import Token
        from lark.lexer import BasicLexer, ContextualLexer, UnlessCallback
        from lark.parsers.lalr_analysis import Shift

        o = lark.options
        if (o.parser != "lalr" or o.propagate_positions is not True or not o.maybe_placeholders
                or o.keep_all_tokens or o.transformer is not None or o.lexer_callbacks):
            raise Unsupported("options")
        try:
            table = lark.parser.parser.parser.parse_table
            connector = lark.parser.lexer
            contextual, post = connector.lexer, connector.postlexer
            self.paren = (frozenset(post.opens), frozenset(post.closes), post.dropped)
            states, self.start_states, self.end_states = (
                table.states, dict(table.start_states), dict(table.end_states))
        except AttributeError as e:
            raise Unsupported(str(e)) from None
        if type(contextual) is not ContextualLexer or Token.__slots__ != (
                "type", "start_pos", "value", "line", "column", "end_line", "end_column", "end_pos"):
            raise Unsupported("lexer")
        rules: dict = {}
        # state → {terminal: next state (int) or _Rule; rule name: goto state}
        self.actions: dict = {}
        for state, row in states.items():
            acts = {}
            for sym, (action, arg) in row.items():
                if action is Shift:
                    acts[sym] = arg
                else:
                    if arg not in rules:
                        rules[arg] = _Rule(arg, methods, nests)
                    acts[sym] = rules[arg]
            self.actions[state] = acts
        # The lexer of each state, made into (match, special) on first use (building all
        # of Lark's scanners at once would cost a cold start tens of milliseconds).
        for lexer in contextual.lexers.values():
            if type(lexer) is not BasicLexer or lexer.user_callbacks or lexer.g_regex_flags or lexer.use_bytes:
                raise Unsupported("basic lexer")
        if set(contextual.lexers) != set(self.actions) or not all(type(s) is int for s in self.actions):
            raise Unsupported("states")
        self._basic: dict[int, Any] = contextual.lexers  # BasicLexers, checked above
        self._unless = UnlessCallback
        self._made: dict = {}
        self.lexers: dict = {}
        # The post-lexer's rule: kind → +1 (opens), -1 (closes), 0 (a line break it drops inside).
        opens, closes, dropped = self.paren
        self.paren_step = {**{k: 1 for k in opens}, **{k: -1 for k in closes}, dropped: 0}
        self._chains: dict = {start: {} for start in self.start_states}

    def parse(self, text: str, start: str, builder, max_depth: int):
        """The value the builder's ``start`` rule method returns for ``text``; raises
        :class:`Declined` where Lark would raise, or where a rule nests deeper than
        ``max_depth`` levels.

        >>> from netdsl.syntax.parser import _Builder, _lean
        >>> _lean().parse("[1, 2 * x]", "expr", _Builder(None, ""), 10).items[1].op
        '*'
        >>> _lean().parse("[1, 2 * x]", "expr", _Builder(None, ""), 1)
        Traceback (most recent call last):
        netdsl.syntax.lalr.Declined
        """
        from lark import Token

        actions, lexers, chain = self.actions, self.lexers, self._chains[start]
        paren_step = self.paren_step
        new_str, Node = str.__new__, _Node
        state, end_state = self.start_states[start], self.end_states[start]
        states, values = [state], []
        pos, line, line_start, n = 0, 1, 0, len(text)
        paren = 0
        while True:
            # -- the next token, lexed in the state the parser is in (the contextual lexer)
            if pos < n:
                try:
                    match, special = lexers[state]
                except KeyError:
                    match, special = self._lexer(state) or _declined()
                m = match(text, pos)
                if m is None:
                    raise Declined
                value, kind = m.group(), m.lastgroup
                start_pos, start_line, column = pos, line, pos - line_start + 1
                pos = m.end()
                if kind in special:
                    multiline, ignored, retype = special[kind]
                    if multiline:
                        breaks = value.count("\n")
                        if breaks:
                            line += breaks
                            line_start = start_pos + value.rindex("\n") + 1
                    if ignored:
                        continue
                    if retype is not None:  # a keyword the NAME pattern matched
                        memo, fullmatch = retype
                        try:
                            kind = memo[value]
                        except KeyError:
                            kind = memo[value] = fullmatch(value) or kind
                if kind in paren_step:  # _ParenNewlines, as its attributes say
                    step = paren_step[kind]
                    if step > 0:
                        paren += 1
                    elif step < 0:
                        paren = paren - 1 if paren else 0
                    elif paren:
                        continue
                tok = new_str(Token, value)
                tok.type, tok.start_pos, tok.value = kind, start_pos, value
                tok.line, tok.column, tok.end_pos = start_line, column, pos
                tok.end_line, tok.end_column = line, pos - line_start + 1
                is_end = False
            else:
                kind, tok, is_end = "$END", None, True
            # -- reduce while the table says so, then shift
            while True:
                act = actions[state].get(kind)
                if act is None:
                    raise Declined
                if act.__class__ is int:
                    if is_end:
                        raise Declined
                    state = act
                    states.append(state)
                    values.append(tok)
                    break
                if act.kind == _PASS:
                    # A chain of pass-through reductions only changes the top state;
                    # where it ends depends on the state below and the lookahead.
                    key = (states[-2], state, kind)
                    to = chain.get(key)
                    if to is None:
                        to = chain[key] = self._pass_chain(states[-2], state, kind, end_state)
                    states[-1] = state = to
                    if is_end and state == end_state:
                        return _value(values[-1])
                    continue
                size = act.size
                if size:
                    raw = values[-size:]
                    del values[-size:]
                    del states[-size:]
                else:
                    raw = []
                node = _reduce(act, raw, builder)
                if node.__class__ is Node and node.depth > max_depth:
                    raise Declined
                state = actions[states[-1]][act.origin]
                states.append(state)
                values.append(node)
                if is_end and state == end_state:
                    return _value(node)

    def _lexer(self, state):
        """(match, special) of the state's lexer: its scanner's one regular expression,
        and kind → (counts lines, is ignored, (memo, retype) or None) for the kinds it
        does more with than make a token. None where Lark's scanner is not of that form."""
        lexer = self._basic[state]
        if id(lexer) not in self._made:
            mres = lexer.scanner._mres
            if len(mres) != 1 or not all(type(c) is self._unless for c in lexer.callback.values()):
                made = None
            else:
                special: dict[str, tuple] = {}
                for kind in {*lexer.newline_types, *lexer.ignore_types, *lexer.callback}:
                    cb = lexer.callback.get(kind)
                    special[kind] = (kind in lexer.newline_types, kind in lexer.ignore_types,
                                     None if cb is None else ({}, cb.scanner.fullmatch))
                made = (mres[0].match, special)
            self._made[id(lexer)] = made
        made = self._made[id(lexer)]
        if made is not None:
            self.lexers[state] = made
        return made

    def _pass_chain(self, below, state, kind, end_state):
        actions = self.actions
        while True:
            act = actions[state].get(kind)
            if act is None or act.__class__ is int or act.kind != _PASS:
                return state
            state = actions[below][act.origin]
            if kind == "$END" and state == end_state:
                return state


def _declined():
    raise Declined


def _value(entry):
    return entry.value if entry.__class__ is _Node else entry


def _reduce(rule: _Rule, raw: list, builder):
    """One reduction: the children Lark's tree builder would keep, the positions it
    would give, then the builder's rule method (or the children list of an inlined
    rule, or the one child of a ``?rule``)."""
    Node = _Node
    # PropagatePositions: from the first child that has a position to the last one.
    first: Any = None
    last: Any = None
    depth = 0
    for e in raw:
        if e.__class__ is Node:
            if e.depth > depth:
                depth = e.depth
            if e.empty:
                continue
        elif e is None:
            continue
        if first is None:
            first = e
        last = e
    if rule.pure:
        kept = raw if rule.whole else [raw[i] for i in rule.indices]
    else:
        kept = []
        for i, splice, nones in rule.keep:
            if nones:
                kept += [None] * nones
            if splice:
                if kept:
                    kept += raw[i].value
                else:  # the same list, extended: a long `_rule*` stays linear
                    kept = raw[i].value
            else:
                kept.append(raw[i])
        if rule.trailing:
            kept += [None] * rule.trailing
    kind = rule.kind
    if kind == _EXPAND and len(kept) == 1:
        node = kept[0]
        if node.__class__ is Node and first is not None:
            node.empty = False
            node.line, node.column = first.line, first.column
            node.end_line, node.end_column = last.end_line, last.end_column
        return node
    node = Node()
    if first is None:
        node.empty = True
        node.line = node.column = node.end_line = node.end_column = None
    else:
        node.empty = False
        node.line, node.column = first.line, first.column
        node.end_line, node.end_column = last.end_line, last.end_column
    if kind == _INLINE:
        node.value = kept
        node.depth = depth
        return node
    node.depth = depth + 1 if rule.nests else depth
    node.value = rule.method(builder, node, [e.value if e.__class__ is Node else e for e in kept])
    return node
