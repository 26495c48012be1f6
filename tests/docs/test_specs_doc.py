"""docs/specs.md states each shipped spec's figures; they must be netdsl's."""

import re
from pathlib import Path

import pytest
from shipped import grant_for

import netdsl
from netdsl.analysis import analyse

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "specs.md").read_text()


@pytest.mark.slow
def test_every_shipped_network_file_is_listed_with_its_figures():
    rows = re.findall(r"^\| \[`(\w+\.net)`\]\(\.\./specs/\1\) \| ([\d×]+) \| ([\d,]+) \| ([\d,]+) \| (\d+) \|",
                      DOC, flags=re.M)
    shipped = {p.name for p in (ROOT / "specs").glob("*.net")}
    # A family is a file the short files select a member of; its members not shipped
    # as a short file of their own have rows in the family table (possibly none).
    families = {m for p in (ROOT / "specs").glob("*.net")
                for m in re.findall(r'^import "(\w+\.net)"', p.read_text(), flags=re.M)}
    assert set(re.findall(r"^\| `(\w+\.net)` \| `", DOC, flags=re.M)) <= families
    assert {r[0] for r in rows} == shipped - families  # every network file, each once
    assert len(rows) == len({r[0] for r in rows})
    for name, shape, params, macs, keys in rows:
        path = ROOT / "specs" / name
        a = analyse(netdsl.compile(str(path), grant=grant_for(path)))
        assert "×".join(map(str, a.input)) == shape, name
        assert a.params == int(params.replace(",", "")), name
        assert a.macs == int(macs.replace(",", "")), name
        assert len(netdsl.build(str(path), device="meta", grant=grant_for(path)).state_dict()) == int(keys), name


@pytest.mark.slow
def test_family_rows_are_what_the_family_spec_gives():
    rows = re.findall(r"^\| `(\w+\.net)` \| `([^`]*)` \| [\d×]+ \| ([\d,]+) \| ([\d,]+) \|", DOC, flags=re.M)
    assert len(rows) == 76
    for name, settings, params, macs in rows:
        overrides = dict(kv.split(" = ") for kv in re.split(r", (?=\w+ =)", settings))
        path = ROOT / "specs" / name
        a = analyse(netdsl.compile(str(path), grant=grant_for(path), **overrides))
        assert (a.params, a.macs) == (int(params.replace(",", "")), int(macs.replace(",", ""))), settings


# ---------------------------------------------------------------- counts the docs state

README = (ROOT / "README.md").read_text()
_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
          "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
          "seventeen": 17, "eighteen": 18}


def _count(word: str) -> int:
    return int(word.replace(",", "")) if word[0].isdigit() else _WORDS[word.lower()]


def _families() -> set[str]:
    """The family files: those a short file imports to select a member of."""
    return {m for p in (ROOT / "specs").glob("*.net")
            for m in re.findall(r'^import "(\w+\.net)"', p.read_text(), flags=re.M)}


def _networks() -> list[str]:
    """The shipped network files: every spec file but the families."""
    return sorted(p.name for p in (ROOT / "specs").glob("*.net") if p.name not in _families())


def test_the_number_of_shipped_networks_and_files_is_what_the_docs_say():
    files = len(list((ROOT / "specs").glob("*.net")))
    networks, families = len(_networks()), len(_families())
    assert networks + families == files and networks > 20
    m = re.search(r"ships (\d+) networks in (\d+) files \(the other (\d+) files are the\s+families", README)
    assert m, "README.md: say how many networks and files specs/ holds"
    assert tuple(map(int, m.groups())) == (networks, files, families)
    m = re.search(r"`specs/` holds (\d+) networks in (\d+) files", DOC)
    assert m, "docs/specs.md: say how many networks and files specs/ holds"
    assert tuple(map(int, m.groups())) == (networks, files)
    # The table lists each network once (checked against the files by the slow test above).
    rows = re.findall(r"^\| \[`(\w+\.net)`\]\(\.\./specs/\1\) \|", DOC, flags=re.M)
    assert len(rows) == networks


def test_the_classic_tour_is_seven_networks_where_the_docs_count_them():
    # README: "the seven networks of the classic CNN tour — LeNet-5, ..., and EfficientNet-B0/B1 —"
    m = re.search(r"the (\w+) networks of the classic CNN tour — (.*?) —", README, flags=re.S)
    named = re.split(r",\s+|\s+and\s+", m.group(2))
    assert _count(m.group(1)) == len(named) == 7, named
    # docs/specs.md: "these seven classic backbones and the key idea of each: ... (LeNet-5), ..."
    m = re.search(r"these (\w+) classic\s+backbones and the key idea of each: (.*?)\.\n", DOC, flags=re.S)
    assert _count(m.group(1)) == len(re.findall(r"\(([^)]+)\)", m.group(2))) == 7


def _beyond_a_chain(name: str) -> bool:
    """Whether a network splits its channels or names results (a graph, not a chain)."""
    from netdsl import ir
    from netdsl.ir.walk import walk

    path = ROOT / "specs" / name
    net = netdsl.compile(str(path), grant=grant_for(path))
    return any(isinstance(n, (ir.Split, *ir.FLOW_NODES)) for n in walk(net.body))


def test_the_networks_said_to_go_beyond_a_chain_are_those_that_do():
    m = re.search(r"^(\w+) of them go beyond a chain: (.*?)\n\n", DOC, flags=re.M | re.S)
    assert m, "docs/specs.md: say which shipped networks go beyond a chain"
    named = re.findall(r"`(\w+\.net)`", m.group(2))
    beyond = [name for name in _networks() if _beyond_a_chain(name)]
    assert sorted(named) == beyond
    assert _count(m.group(1)) == len(beyond)
