"""The parser: valid snippets give the right AST, invalid ones a located E000x."""

import pytest

import netdsl
from netdsl import ast
from netdsl.parser import parse, parse_expr


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
