"""Reading back the Mermaid text netdsl writes (`netdsl graph --format mermaid`): the
diagram tests and the docs' diagrams (tests/analysis/test_graph.py,
tests/docs/test_gallery.py) parse it with this, and it fails on any line netdsl
does not write or any label Mermaid would read as markup."""

import re

_MERMAID_LINE = re.compile(
    r'^(?P<i> *)(?:(?P<head>flowchart TD)|subgraph (?P<cid>c\d+)\["(?P<cl>[^"]+)"\]|(?P<end>end)|'
    r'(?P<nid>n\d+)(?:\(\["(?P<l1>[^"]*)"\]\)|\[\["(?P<l2>[^"]*)"\]\]|\(\("(?P<l3>[^"]*)"\)\)|'
    r'\["(?P<l4>[^"]*)"\]|\[/"(?P<l5>[^"]*)"/\])|(?P<src>n\d+) (?:-->|-\.->|-\.->\|side\|) (?P<dst>n\d+))$')


def mermaid_label(text: str) -> list[str]:
    """A quoted Mermaid label's lines: `<br/>` breaks lines, `#N;` is character N, and
    nothing else Mermaid would read as markup is left."""
    lines = text.split("<br/>")
    for line in lines:
        assert not re.search(r"[<>&`\"]|#(?!\d+;)", line), line
        assert all(c.isprintable() for c in line)
    return [re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), line) for line in lines]


def parse_mermaid(text: str) -> dict:
    out = {"nodes": {}, "clusters": [], "edges": []}
    depth = 0
    lines = text.split("\n")
    assert lines[0] == "flowchart TD"
    for line in lines[1:]:
        m = _MERMAID_LINE.match(line)
        assert m, f"not a Mermaid line this renderer writes: {line!r}"
        if m["cid"]:
            depth += 1
            out["clusters"].append(mermaid_label(m["cl"]))
        elif m["end"]:
            depth -= 1
            assert depth >= 0
        elif m["nid"]:
            label = next(m[k] for k in ("l1", "l2", "l3", "l4", "l5") if m[k] is not None)
            out["nodes"][m["nid"]] = mermaid_label(label)
        else:
            out["edges"].append((m["src"], m["dst"]))
    assert depth == 0
    return out
