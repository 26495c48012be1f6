"""The parser: valid snippets give the right AST, invalid ones a located E000x."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import netdsl
from netdsl.syntax import ast
from netdsl.syntax.parser import parse, parse_expr, unclosed


def first(text):
    return parse(text).items[0]


def test_block_with_defaults_and_keyword_arguments():
    b = first("block unit(planes, stride = 2) {\n  conv2d(planes, 3, stride = stride)\n}")
    assert isinstance(b, ast.BlockDef)
    assert [p.name for p in b.params] == ["planes", "stride"]
    assert b.params[1].default == ast.Number(2)
    use = b.body[0]
    assert use.name == "conv2d"
    assert [a.name for a in use.args] == [None, None, "stride"]


def test_statements_split_by_newlines_and_semicolons():
    b = first("block b() { relu; tanh\n sigmoid }")
    assert [s.name for s in b.body] == ["relu", "tanh", "sigmoid"]


def test_calls_and_lists_may_span_lines():
    b = first("block b() {\n conv2d(\n 64,\n [3,\n 3]\n)\n}")
    assert len(b.body) == 1
    assert b.body[0].args[1].value == ast.List((ast.Number(3), ast.Number(3)))


def test_else_and_shortcut_on_the_next_line_continue_the_statement():
    b = first("block b() {\n if true { relu }\n else { tanh }\n residual { relu }\n shortcut { tanh }\n}")
    assert isinstance(b.body[0], ast.If) and b.body[0].orelse[0].name == "tanh"
    assert isinstance(b.body[1], ast.Residual) and b.body[1].shortcut is not None


def test_operator_precedence():
    e = parse_expr("1 + 2 * 3 ** 2")
    assert e == ast.BinOp("+", ast.Number(1), ast.BinOp("*", ast.Number(2),
                                                         ast.BinOp("**", ast.Number(3), ast.Number(2))))
    e = parse_expr("-2 ** 2")
    assert e == ast.UnaryOp("-", ast.BinOp("**", ast.Number(2), ast.Number(2)))
    e = parse_expr("a if not b and c or d else e")
    assert isinstance(e, ast.IfExp)
    assert e.cond.op == "or" and e.cond.left.op == "and"


def test_numbers_keep_int_and_float_apart():
    assert parse_expr("3").value == 3 and isinstance(parse_expr("3").value, int)
    assert parse_expr("1e-3").value == 0.001
    assert parse_expr("2.").value == 2.0 and isinstance(parse_expr("2.").value, float)


def test_label_templates_hold_expressions_with_their_own_spans():
    net = first('network n() {\n  "layer{i + 1}": relu\n}')
    label = net.body[0].label
    assert label.parts[0] == "layer"
    hole = label.parts[1]
    assert isinstance(hole, ast.BinOp)
    assert (hole.span.line, hole.span.column) == (2, 10)


def test_keywords_that_cannot_start_a_statement_may_be_labels():
    b = first("block b() {\n block: { relu }\n gate: relu\n}")
    assert [s.label.parts[0] for s in b.body] == ["block", "gate"]


def test_spans_do_not_take_part_in_equality():
    assert parse("block b() { relu }") == parse("\n\nblock   b( ) {\n   relu\n}")


def test_comments_and_blank_lines_anywhere():
    m = parse("# top\n\nblock b() { # after brace\n\n  relu  # trailing\n\n}\n# end\n")
    assert m.items[0].body[0].name == "relu"


def test_network_alias():
    a = first("network small = big(width = 0.5)")
    assert isinstance(a, ast.NetworkAlias) and a.base.id == "big" and a.args[0].name == "width"


def test_bom_is_ignored():
    assert parse("\ufeffblock b() { relu }").items[0].name == "b"


@pytest.mark.parametrize("text, line, column, code", [
    ("block b() { conv2d(64, 3 }", 1, 26, "E0001"),            # missing `)`
    ("block b() {\n  relu\n", 3, 1, "E0004"),                     # unclosed brace
    ("block b() {\n  conv2d(64 3)\n}", 2, 13, "E0001"),          # missing comma
    ("block b() {\n  relu $\n}", 2, 8, "E0002"),                  # stray character
    ('block b() {\n  "layer: relu\n}', 2, 3, "E0003"),            # unterminated string
    ("network n() {\n  x = 3\n}", 2, 5, "E0001"),                 # assignment without let
    ('network n() {\n  "a{1 +}": relu\n}', 2, 9, "E0005"),        # broken template hole
])
def test_syntax_errors_are_located(text, line, column, code):
    with pytest.raises(netdsl.NetdslError) as info:
        parse(text, "t.net")
    d = info.value.diagnostics[0]
    assert (d.code, d.span.line, d.span.column) == (code, line, column)
    assert d.span.file == "t.net"


def test_syntax_error_names_what_was_expected_in_words():
    with pytest.raises(netdsl.NetdslError) as info:
        parse("block b() { conv2d(64, 3 }")
    rendered = info.value.render()
    assert "expected" in rendered and "`)`" in rendered
    assert "RPAR" not in rendered


def test_rendered_diagnostic_shows_the_line_and_a_caret():
    with pytest.raises(netdsl.NetdslError) as info:
        parse("block b() {\n  relu $\n}", "t.net")
    text = info.value.render()
    assert "--> t.net:2:8" in text
    assert "2 |   relu $" in text
    assert "  |        ^" in text
    assert "  = help:" in text


# ---------------------------------------------------------------- a bracket left open


def _syntax_error(text):
    with pytest.raises(netdsl.NetdslError) as e:
        parse(text)
    return e.value.diagnostics[0]


def test_a_missing_brace_is_named_where_it_was_opened_not_where_the_parser_stopped():
    # The residual's `}` is missing: the parser only fails at the next network, 5 lines on.
    text = ("network a() {\n    input [3, 8, 8]\n    residual {\n        relu\n\n    relu\n}\n\n"
            "network b() {\n    input [3, 8, 8]\n}\n")
    d = _syntax_error(text)
    assert (d.code, d.span.line) == ("E0001", 9)
    assert d.notes == ("this `{` at 3:14 is not closed",)
    assert d.help == "add the `}` that closes `residual {` where its body ends"


def test_the_end_of_the_file_names_the_brace_left_open():
    d = _syntax_error("network n() {\n    input [3, 8, 8]\n    relu\n")
    assert d.code == "E0004" and d.notes == ("this `{` at 1:13 is not closed",)
    assert d.help == "add the `}` that closes `network n() {` where its body ends"


def test_an_unclosed_call_or_list_is_named_too():
    d = _syntax_error("network n() {\n    input [3, 8, 8]\n    conv2d(4, 3\n    relu\n}\n")
    assert d.notes == ("this `(` at 3:11 is not closed",) and "`conv2d(`" in d.help
    d = _syntax_error("network n(d = [1, 2) {\n    input [3, 8, 8]\n}\n")
    assert d.notes == ("this `[` at 1:15 is not closed",) and "where its list ends" in d.help


def test_a_syntax_error_in_a_balanced_file_names_no_bracket():
    d = _syntax_error("network n() {\n    input [3, 8, 8]\n    conv2d(16, 3 padding = 1)\n}\n")
    assert d.notes == () and d.help == "separate arguments with `,` and close the call with `)`"


@pytest.mark.parametrize("text, found", [
    ('a {\n  "{ not a bracket" # nor { this\n}\n', None),        # strings and comments
    ('a {\n  "x\\"{"\n}\n', None),                                # an escaped quote in a string
    ("a {\n  b {\n}\n  }\n", None),                               # misindented but balanced
    ("a {\n  b {\n    c {\n  }\n}\n", ("{", 3, 7)),                # the deepest one lost its line
    ("a {\n\tb {\n\t\tc\n}\n", ("{", 2, 4)),                       # tabs are indentation
    ("a {\n  b(1, [2\n}\n", ("[", 2, 8)),                          # inner first
])
def test_unclosed(text, found):
    assert unclosed(text) == found


def _nested(draw_sizes, depth=0):
    """Lines of a well-indented spec body: groups of groups, with their brace positions."""
    lines, opens = [], []
    for size in draw_sizes:
        pad = "    " * depth
        if isinstance(size, list):
            opens.append((len(lines), len(pad) + 6))
            lines.append(f"{pad}grp: {{")
            inner, inner_opens = _nested(size, depth + 1)
            opens.extend((i + len(lines), c) for i, c in inner_opens)
            lines.extend(inner)
            lines.append(f"{pad}}}")
        else:
            lines.extend([f"{pad}relu"] * size)
    return lines, opens


_tree = st.recursive(st.integers(0, 2), lambda kids: st.lists(kids, min_size=1, max_size=3),
                     max_leaves=12)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.lists(_tree, min_size=1, max_size=4), st.data())
def test_the_brace_whose_closing_line_is_removed_is_the_one_named(body, data):
    lines, opens = _nested(body, 1)
    text_lines = ["network n() {", "    input [3, 8, 8]"] + lines + ["}"]
    opens = [(0, 13)] + [(i + 2, c) for i, c in opens]
    # Remove the line that closes one `{`: the one on the line indented like its opener.
    which = data.draw(st.integers(0, len(opens) - 1))
    row, col = opens[which]
    indent = len(text_lines[row]) - len(text_lines[row].lstrip())
    close = next(i for i in range(row + 1, len(text_lines)) if text_lines[i] == " " * indent + "}")
    text = "\n".join(text_lines[:close] + text_lines[close + 1:]) + "\n"
    assert unclosed(text) == ("{", row + 1, col)
    d = _syntax_error(text)
    assert d.code in ("E0001", "E0004") and d.notes == (f"this `{{` at {row + 1}:{col} is not closed",)


def test_a_text_parsed_again_reuses_its_ast_and_errors_are_not_kept():
    from netdsl.diagnostics import NetdslError
    from netdsl.limits import Limits
    from netdsl.syntax.parser import parse as parse_text

    text = "network cached_once() { input [1]\n relu }"
    first = parse_text(text, "a.net")
    assert parse_text(text, "a.net") is first
    assert parse_text(text, "b.net") is not first
    assert parse_text(text, "b.net").items[0].span.file == "b.net"
    deep = "network n() { input [1]\n a: { b: { relu } } }"
    parse_text(deep, "d.net")
    with pytest.raises(NetdslError):  # a tighter limit is another parse, not the cached one
        parse_text(deep, "d.net", Limits(max_nesting=1))
    for _ in range(2):
        with pytest.raises(NetdslError):
            parse_text("network n( {", "e.net")


def test_a_header_goes_on_over_line_breaks_before_as_and_the_brace():
    # `as Class` on a continuation line was E0001 ("unexpected a line break").
    import netdsl

    text = ("block b(c)\n    as Bottleneck\n{\n    conv2d(c, 1)\n}\n"
            "network n()  # the network\n    as Net {\n    input [3, 8, 8]\n    b(4)\n}\n")
    model = netdsl.build(text)
    assert type(model).__name__ == "Net" and type(model.get_submodule("0")).__name__ == "Bottleneck"
    from netdsl.syntax.fmt import format_text

    assert format_text(text).startswith("block b(c) as Bottleneck {\n")


def test_a_line_break_where_none_may_be_is_named_plainly():
    import netdsl

    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile("let x = 1 +\nnetwork n() {\n    input [3, 8, 8]\n}\n")
    assert "unexpected line break" in str(e.value) and "unexpected a line break" not in str(e.value)
