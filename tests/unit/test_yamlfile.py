"""The one YAML loader (grading.yamlfile): lines kept for file:line messages, duplicate keys and
syntax errors refused with file:line:column, YAML 1.2 numbers, keys such as on/yes kept as text,
and file names in a file kept inside their folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from grading import yamlfile
from grading.yamlfile import YamlError

DOCUMENT = b"""\
# a rule file
tiers:
  - name: gold
    when: {spend: 5e4}
  - name: silver
map:
  yes: true
  on: customer_id
"""


def test_mappings_lists_and_keys_know_their_lines() -> None:
    doc = yamlfile.load(Path("rules.yaml"), DOCUMENT)
    assert isinstance(doc, yamlfile.Node)
    assert yamlfile.line_of(doc, "tiers") == 2
    assert yamlfile.line_of(doc, "map") == 6
    assert yamlfile.line_of(doc["tiers"]) == 3
    gold, silver = doc["tiers"]
    assert (yamlfile.line_of(gold), yamlfile.line_of(silver)) == (3, 5)
    assert yamlfile.line_of(gold, "when") == 4
    # a key the mapping lacks points at the mapping itself; a plain value has no line
    assert yamlfile.line_of(gold, "missing") == 3
    assert yamlfile.line_of("gold") == 0


def test_numbers_follow_yaml_1_2_and_on_yes_keys_stay_text() -> None:
    doc = yamlfile.load(Path("rules.yaml"), DOCUMENT)
    assert doc["tiers"][0]["when"]["spend"] == 50000.0
    assert isinstance(doc["tiers"][0]["when"]["spend"], float)
    # YAML 1.1 would read these keys as booleans; as keys they are names and source values
    assert dict(doc["map"]) == {"yes": True, "on": "customer_id"}


def test_a_key_given_twice_names_file_line_column_and_the_first_line() -> None:
    raw = b"tiers:\n  gold: 1\n  silver: 2\n  gold: 3\n"
    with pytest.raises(YamlError, match=r"^tiers\.yaml:4:3: key 'gold' appears twice in one mapping "
                                        r"\(first on line 2\); remove one$"):
        yamlfile.load(Path("tiers.yaml"), raw)


@pytest.mark.parametrize(("raw", "message"), [
    (b"tiers:\n  - gold\n bad: [1, 2\n", r"^x\.yaml:3:2: not valid YAML: "),
    (b"name: caf\xe9\n", r"^x\.yaml: must be UTF-8 text"),
    (b"!!python/object:os.system {}\n", r"^x\.yaml:1:1: not valid YAML: .*could not determine a constructor"),
], ids=["syntax", "not-utf8", "no-objects"])
def test_a_broken_file_is_refused_naming_where(raw: bytes, message: str) -> None:
    with pytest.raises(YamlError, match=message):
        yamlfile.load(Path("x.yaml"), raw)


def test_a_byte_order_mark_is_accepted() -> None:
    assert yamlfile.load(Path("x.yaml"), "\ufeffa: 1\n".encode()) == {"a": 1}


def test_file_names_in_a_file_stay_inside_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    (folder / "2024").mkdir(parents=True)
    (tmp_path / "secret.csv").write_text("x\n")
    (folder / "link.csv").symlink_to(tmp_path / "secret.csv")
    assert yamlfile.inside(folder, "2024/orders.csv") == (folder / "2024" / "orders.csv").resolve()
    for name in ("/etc/passwd", "~/orders.csv", "../secret.csv", "2024/../../secret.csv"):
        assert yamlfile.escapes(name), name
        assert yamlfile.inside(folder, name) is None, name
    assert not yamlfile.escapes("orders-*.csv")
    # a link inside the folder that points out of it escapes too, once followed
    assert yamlfile.inside(folder, "link.csv") is None
