"""Generated specs that try to break what netdsl writes: labels, block names, comments
and result names that would be code, keywords or markup if copied carelessly.
tests/backend/test_pysource.py exports them and tests/check/test_memo.py checks them
with the memo on and off."""

from hypothesis import strategies as st

# Labels the checker accepts are letters, digits and `_` of any script; these are the
# ones that would break generated code written carelessly.
_TRICKY_LABELS = ["import", "None", "self", "super", "x", "out", "identity", "features", "0",
                  "__init__x", "_x", "ﬁ", "𝔘", "e\u0301", "é", "getattr", "nn", "torch", "class", "lambda",
                  "print", "OrderedDict", "StochasticDepth", "__class__x", "é"]
_LABEL = st.one_of(st.sampled_from(_TRICKY_LABELS),
                   st.text(st.characters(categories=["L", "N"], include_characters="_"),
                           min_size=1, max_size=10))
_COMMENT = st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=30)


def _spec_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def hostile_specs(draw):
    labels = draw(st.lists(_LABEL, min_size=10, max_size=10, unique=True))
    notes = draw(st.lists(_COMMENT, min_size=4, max_size=4))
    block = draw(st.one_of(st.sampled_from(["print", "nn", "torch", "exec", "class_", "Exception",
                                            "stochastic_depth", "network_"]),
                           st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)))
    lab = [_spec_string(x) for x in labels]
    text = (f"# {notes[0]}\nblock {block}(c) {{\n    {lab[0]}: conv2d(c, 3, padding = 1)  # {notes[1]}\n"
            f"    relu\n}}\n# {notes[2]}\nnetwork n() {{\n    input [3, 8, 8]\n    {lab[1]}: {block}(4)\n"
            f"    residual {{\n        {lab[2]}: conv2d(4, 1)\n    }}\n"
            f"    concat {{\n        {lab[3]}: conv2d(2, 1)\n        {{ {lab[4]}: conv2d(2, 1) }}\n    }}\n"
            f"    gate {{ adaptive_avgpool2d(1)\n sigmoid }}\n"
            f"    {lab[6]}: {{\n        {lab[7]}: conv2d(4, 1)\n        relu\n    }}\n"
            f"    {lab[8]}: {{\n        residual {{ conv2d(4, 1) }}\n"
            f"        dense {{\n            {lab[9]}: conv2d(2, 1)\n            conv2d(2, 1)\n        }}\n    }}\n"
            f"    side aux {{ flatten\n {lab[5]}: linear(2) }}  # {notes[3]}\n"
            f"    dropout(0.5)\n    flatten\n    linear(3)\n}}\n")
    return text, notes


@st.composite
def hostile_flow_specs(draw):
    names = draw(st.lists(_LABEL, min_size=5, max_size=5, unique=True))
    q = [_spec_string(x) for x in names]
    form = draw(st.sampled_from(["tuple", "dict"]))
    out = f"tuple({q[3]}, {q[4]})" if form == "tuple" else f"dict({q[0]}: {q[3]}, {q[1]}: {q[4]})"
    return (f"network n() {{\n    input [4, 8, 8]\n    {q[0]}: conv2d(4, 1) -> {q[0]}\n"
            f"    {q[1]}: {{\n        {q[2]}: conv2d(4, 1) -> {q[1]}\n        relu -> {q[2]}\n    }}\n"
            f"    add({q[0]}, {q[1]}, {q[2]}) -> {q[3]}\n"
            f"    concat({q[3]}, {q[2]}) -> {q[4]}\n    output {out}\n}}\n")
