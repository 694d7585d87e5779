"""Applying a mapping to real records: fields, properties, normalisation, drops and rejects."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from etl.extract import Extractor, RowRejected, lookup, normalize
from etl.mapping import load_mapping, parse_mapping

FLAT = ["brandName", "gender", "ageGroup", "baseColour", "colour1", "colour2", "fashionType", "season", "year", "usage"]


@pytest.fixture(scope="module")
def fashion_records(fashion_lines):
    return [json.loads(line) for line in fashion_lines[:300]]


@pytest.fixture(scope="module")
def k3m_records(k3m_lines):
    names = ["id", "title", "image_url", "knowledge", "category"]
    return [dict(zip(names, line.decode("utf-8").split("\t"))) for line in k3m_lines[:50]]


def test_normalize():
    assert normalize("  Navy \t Blue\n") == "Navy Blue"
    assert normalize(2011) == "2011" and normalize(2011.0) == "2011" and normalize(2.5) == "2.5"
    assert normalize(True) == "true" and normalize(float("nan")) is None and normalize(None) is None
    with pytest.raises(TypeError):
        normalize({"id": 1})


def test_lookup_dotted_and_literal_keys(fashion_records):
    r = fashion_records[0]
    assert lookup(r, "articleType.typeName") == "Skirts"
    assert lookup({"a.b": 1, "a": {"b": 2}}, "a.b") == 1  # a flat column named with a dot wins


def test_fashion_item_matches_the_raw_record(fashion_records):
    drops = Counter()
    extract = Extractor(load_mapping("fashion44k"), drops)
    for r in fashion_records:
        item = extract(r)
        raw = [(k, r[k]) for k in FLAT] + list(r["articleAttributes"].items())
        expected = {(" ".join(k.split()), " ".join(v.split())) for k, v in raw}
        assert set(item.pairs) == {(k, v) for k, v in expected if v not in ("NA", "")}
        assert item.item_id == str(r["id"]) and item.category == r["articleType"]["typeName"]
        assert item.title == " ".join(r["productDisplayName"].split())
        assert item.group == " ".join(item.title.lower().split())
        assert item.image_ref == f"images/{r['id']}.jpg"
        assert not {p for p, _ in item.pairs} & {"masterCategory", "subCategory", "articleType"}
    assert drops["absent"] > 0 and drops["empty"] > 0


def test_k3m_pairs_keep_repeated_properties(k3m_records):
    extract = Extractor(load_mapping("k3m-tsv"), Counter())
    item = extract(k3m_records[1])  # 适用年龄 occurs four times in this row
    raw_pairs = [tuple(p.split("#:#")) for p in k3m_records[1]["knowledge"].split("#;#")]
    assert item.pairs == raw_pairs
    assert sum(p == "适用年龄" for p, _ in item.pairs) == 4
    assert item.image_ref.startswith("https://") and item.category == k3m_records[1]["category"]


@pytest.mark.parametrize("breakage, detail", [
    (lambda k: k.replace("#:#", "", 1), "needs exactly one"),
    (lambda k: k.replace("#:#", "#:#x#:#", 1), "needs exactly one"),
    (lambda k: "#:#" + k.split("#:#", 1)[1], "has no property"),
])
def test_malformed_knowledge_rejects_the_row(k3m_records, breakage, detail):
    drops = Counter()
    extract = Extractor(load_mapping("k3m-tsv"), drops)
    record = dict(k3m_records[0], knowledge=breakage(k3m_records[0]["knowledge"]))
    with pytest.raises(RowRejected, match=detail) as exc:
        extract(record)
    assert exc.value.reason == "malformed_knowledge"
    assert not drops  # a rejected row contributes no counts


def test_empty_value_in_pair_is_dropped_and_counted(k3m_records):
    drops = Counter()
    extract = Extractor(load_mapping("k3m-tsv"), drops)
    knowledge = k3m_records[0]["knowledge"]
    prop = knowledge.split("#:#")[0]
    item = extract(dict(k3m_records[0], knowledge=f"{prop}#:#  #;#{knowledge}#;#{knowledge.split('#;#')[0]}"))
    assert len(item.pairs) == len(knowledge.split("#;#"))
    assert drops == Counter(empty=1, duplicate_triple=1)


def test_missing_and_absent_ids_reject(fashion_records):
    extract = Extractor(load_mapping("fashion44k"), Counter())
    for bad in ({k: v for k, v in fashion_records[0].items() if k != "id"}, dict(fashion_records[0], id="NA"),
                dict(fashion_records[0], id="  ")):
        with pytest.raises(RowRejected) as exc:
            extract(bad)
        assert exc.value.reason == "missing_id"
    with pytest.raises(RowRejected) as exc:
        extract(dict(fashion_records[0], id={"id": 1}))
    assert exc.value.reason == "bad_field"


def test_lone_surrogate_from_json_escape_rejects(fashion_records):
    extract = Extractor(load_mapping("fashion44k"), Counter())
    record = json.loads(json.dumps(fashion_records[0]).replace("Palm", "Pa\\ud800lm", 1))
    with pytest.raises(RowRejected) as exc:
        extract(record)
    assert exc.value.reason == "invalid_utf8"


def test_split_rename_columns_and_excluded_keys(fashion_records):
    mapping = parse_mapping({
        "id": "id",
        "properties": [
            {"column": "displayCategories", "split": ",", "as": "shelf"},
            {"columns": ["colour1", "colour2", "baseColour"], "as": "colour"},
            "articleAttributes.*",
        ],
        "exclude": ["Pattern"],
        "rename": {"Fit": "fit"},
        "absent": ["NA", ""],
    }, origin="inline")
    drops = Counter()
    extract = Extractor(mapping, drops)
    r = next(r for r in fashion_records if "," in r.get("displayCategories", "") and "Fit" in r["articleAttributes"])
    item = extract(r)
    shelves = [v for p, v in item.pairs if p == "shelf"]
    assert shelves == list(dict.fromkeys(s.strip() for s in r["displayCategories"].split(",")))
    assert ("colour", r["baseColour"]) in item.pairs
    assert ("fit", r["articleAttributes"]["Fit"]) in item.pairs
    assert not any(p in ("Fit", "Pattern") for p, _ in item.pairs)
    assert drops["excluded_property"] == ("Pattern" in r["articleAttributes"])


def test_image_template_and_column(fashion_records, k3m_records):
    mapping = parse_mapping({"id": "id", "image": {"dir": "imgs", "path": "{gender}/{articleType.typeName}/{id}.jpg"}},
                            origin="inline")
    r = fashion_records[0]
    assert Extractor(mapping, Counter())(r).image_ref == f"Women/Skirts/{r['id']}.jpg"
    assert Extractor(load_mapping("k3m-tsv"), Counter())(k3m_records[0]).image_ref == k3m_records[0]["image_url"]


def test_nulls_and_nested_values_are_dropped_and_counted(fashion_records):
    drops = Counter()
    extract = Extractor(load_mapping("fashion44k"), drops)
    r = fashion_records[0]
    attrs = dict(r["articleAttributes"], Fit=None, Extra={"nested": "dict"})
    item = extract(dict(r, colour1=None, season=float("nan"), articleAttributes=attrs))
    assert drops["null"] == 3 and drops["not_a_single_value"] == 1
    assert not {p for p, _ in item.pairs} & {"colour1", "season", "Fit", "Extra"}
