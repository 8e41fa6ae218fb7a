"""veil.serve.names: the canonical form and the TS #39 skeleton that decide which enrolled name a name is."""

from __future__ import annotations

import pytest

from veil.serve.names import NAME_RULE, BadName, canonical, confusables_version, skeletons

from .test_gallery_db import LOOKALIKES


def same(a: str, b: str) -> bool:
    ka, kb = skeletons(canonical(a)), skeletons(canonical(b))
    return ka[0] == kb[0] or ka[1] == kb[1]


@pytest.mark.parametrize("name", LOOKALIKES)
def test_every_reported_lookalike_is_person0(name: str) -> None:
    assert same(name, "person0")


@pytest.mark.parametrize("a,b", [("Abdel_Nasser", "abdel nasser"), ("rn", "m"), ("straße", "STRASSE"),
                                 ("ｊｏｈｎ", "john"), ("jоhn", "john"), ("O'Brien", "obrien"), ("l1I", "lll"),
                                 ("Iily", "lily"), ("Il", "il")])
def test_more_confusables_collide(a: str, b: str) -> None:
    assert same(a, b)


@pytest.mark.parametrize("a,b", [("alice", "alicia"), ("josé", "jose"), ("person0", "person1"), ("ann", "anna")])
def test_distinct_names_stay_distinct(a: str, b: str) -> None:
    assert not same(a, b)


def test_canonical_keeps_case_and_trims() -> None:
    assert canonical("  Abdel   Nasser\u3000") == "Abdel Nasser"  # ideographic space trimmed, runs collapsed
    assert canonical("ｐｅｒｓｏｎ０") == "person0"


@pytest.mark.parametrize("bad", ["", "   ", "...", "alice\n", "bob\u200d", "a\x00", "x" * 101, "a/b", "<script>"])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(BadName):
        canonical(bad)


def test_the_table_is_unicodes_and_the_rule_says_so() -> None:
    assert confusables_version().split(".")[0].isdigit()  # Unicode's confusables.txt, e.g. 13.0.0
    assert "TS #39" in NAME_RULE and "person0." in NAME_RULE
