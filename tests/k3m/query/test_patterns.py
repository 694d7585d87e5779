"""Constraint templates: query text never contains a user string; values are parameters."""
from __future__ import annotations

from k3m.query.patterns import ItemFilter, candidate_query

HOSTILE = ["x'}) DETACH DELETE i //", 'Nike"]->(v) SET v.x = 1 //', "`Category`", "$x} RETURN 1 //", "a\nMATCH (n) DELETE n"]


def test_user_strings_only_in_parameters():
    f = ItemFilter(same=(HOSTILE[0], HOSTILE[1]), equals=((HOSTILE[2], HOSTILE[3]), (HOSTILE[4], HOSTILE[0])),
                   category=HOSTILE[1], has_image=False)
    text, params = candidate_query(f)
    for s in HOSTILE:
        assert s not in text
    assert params == {"same_0": HOSTILE[0], "same_1": HOSTILE[1], "property_0": HOSTILE[2], "value_0": HOSTILE[3],
                      "property_1": HOSTILE[4], "value_1": HOSTILE[0], "category": HOSTILE[1], "has_image": False}
    assert text.startswith("MATCH (q:Item {id: $item_id})") and text.endswith("RETURN collect(DISTINCT i.id) AS ids")


def test_empty_and_single_constraints():
    assert ItemFilter().is_empty and ItemFilter().describe() == "no constraint"
    text, params = candidate_query(ItemFilter(has_image=True))
    assert text.splitlines()[0] == "MATCH (i:Item)" and "WHERE i.has_image = $has_image" in text and params == {"has_image": True}
    text, params = candidate_query(ItemFilter(category="Watches"))
    assert "$item_id" not in text and params == {"category": "Watches"}
    assert ItemFilter(same=("brandName",)).needs_query_item and not ItemFilter(category="x").needs_query_item
