"""docs/specs.md states each shipped spec's figures; they must be netdsl's."""

import re
from pathlib import Path

import pytest

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
        a = analyse(netdsl.compile(str(path)))
        assert "×".join(map(str, a.input)) == shape, name
        assert a.params == int(params.replace(",", "")), name
        assert a.macs == int(macs.replace(",", "")), name
        assert len(netdsl.build(str(path), device="meta").state_dict()) == int(keys), name


@pytest.mark.slow
def test_family_rows_are_what_the_family_spec_gives():
    rows = re.findall(r"^\| `(\w+\.net)` \| `([^`]*)` \| [\d×]+ \| ([\d,]+) \| ([\d,]+) \|", DOC, flags=re.M)
    assert len(rows) == 39
    for name, settings, params, macs in rows:
        overrides = dict(kv.split(" = ") for kv in re.split(r", (?=\w+ =)", settings))
        a = analyse(netdsl.compile(str(ROOT / "specs" / name), **overrides))
        assert (a.params, a.macs) == (int(params.replace(",", "")), int(macs.replace(",", ""))), settings
