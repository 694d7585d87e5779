"""The mapping file: built-ins load by name, every mistake names the file and the key."""
from __future__ import annotations

import pytest
import yaml

from etl.mapping import MappingError, builtin_mappings, load_mapping

FASHION_PROPERTIES = ["brandName", "gender", "ageGroup", "baseColour", "colour1", "colour2",
                      "fashionType", "season", "year", "usage"]


def write(tmp_path, text: str):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


def test_builtins_by_name():
    assert {"fashion44k", "k3m-tsv"} <= set(builtin_mappings())
    fashion = load_mapping("fashion44k")
    assert [p.name for p in fashion.properties if p.kind == "column"] == FASHION_PROPERTIES
    assert [(p.kind, p.path) for p in fashion.properties if p.kind != "column"] == [("expand", "articleAttributes")]
    assert (fashion.title, fashion.category, fashion.group) == ("productDisplayName", "articleType.typeName", "title")
    assert set(fashion.exclude) == {"masterCategory", "subCategory", "articleType"}
    assert (fashion.image.archive, fashion.image.path) == ("images.zip", "images/{id}.jpg")
    k3m = load_mapping("k3m-tsv")
    assert k3m.columns == ("id", "title", "image_url", "knowledge", "category")
    assert (k3m.properties[0].kind, k3m.properties[0].pair_separator, k3m.properties[0].kv_separator) == ("pairs", "#;#", "#:#")


def test_a_user_mapping_file_with_every_property_form(tmp_path):
    path = write(tmp_path, """
format: csv
id: sku
title: name
category: type
absent: [NA, "-"]
properties:
  - brand
  - {column: colour, as: baseColour}
  - {columns: [size1, size2], as: size}
  - {column: tags, split: "|", absent: [none]}
  - attrs.*
  - {pairs: knowledge, pair_separator: ";", kv_separator: "="}
exclude: [type]
rename: {Fabric: material}
image: {dir: photos, path: "{sku}.jpg"}
""")
    m = load_mapping(path)
    assert m.name == "mine" and m.origin == str(path) and len(m.sha256) == 64
    assert [(p.kind, p.path, p.name) for p in m.properties] == [
        ("column", "brand", "brand"), ("column", "colour", "baseColour"), ("column", "size1", "size"),
        ("column", "size2", "size"), ("column", "tags", "tags"), ("expand", "attrs", None), ("pairs", "knowledge", None)]
    assert m.properties[4].split == "|" and m.properties[4].absent == ("none",)
    assert m.absent == ("NA", "-") and m.rename == {"Fabric": "material"}


@pytest.mark.parametrize("text, key, problem", [
    ("title: name\n", "id", "is required"),
    ("id: sku\ntitel: name\n", "titel", "did you mean 'title'"),
    ("id: sku\nformat: xlsx\n", "format", "must be one of"),
    ("id: sku\nproperties: brand\n", "properties", "must be a list"),
    ("id: sku\nproperties: [{column: a, split: ''}]\n", r"properties\[0\].split", "separator"),
    ("id: sku\nproperties: [{column: a, expand: b}]\n", r"properties\[0\]", "exactly one of"),
    ("id: sku\nproperties: [{colum: a}]\n", r"properties\[0\].colum", "did you mean 'column'"),
    ("id: sku\nproperties: [{expand: a, as: b}]\n", r"properties\[0\].as", "rename"),
    ("id: sku\nproperties: [{column: a, kv_separator: '='}]\n", r"properties\[0\].kv_separator", "only applies to pairs"),
    ("id: sku\nproperties: [a..b]\n", r"properties\[0\].column", "empty path segment"),
    ("id: sku\nproperties: [b, articleType.typeName]\nexclude: [articleType]\n", r"properties\[1\]", "label leakage"),
    ("id: sku\ncategory: kind\nproperties: [kind]\n", r"properties\[0\]", "leak the label"),
    ("id: sku\nimage: {archive: a.zip}\n", "image", "exactly one of path"),
    ("id: sku\nimage: {path: 'x/{sku}.jpg'}\n", "image.path", "needs an archive or a dir"),
    ("id: sku\nimage: {archive: a.zip, dir: d, path: p}\n", "image", "not both"),
    ("id: sku\nimage: {archive: a.zip, path: 'x/{}.jpg'}\n", "image.path", "empty placeholder"),
    ("id: sku\nimage: {archive: a.zip, path: 'x/{id[:a]}.jpg'}\n", "image.path", r"is not FIELD, FIELD\[START:STOP\]"),
    ("id: sku\nimage: {archive: a.zip, path: 'x/{id:zz}.jpg'}\n", "image.path", "bad format spec 'zz'"),
    ("id: sku\nimage: {archive: a.zip, path: 'x/{id.jpg'}\n", "image.path", "unbalanced brace"),
    ("id: sku\nformat: csv\ncolumns: [sku]\nimage: {archive: a.zip, path: '{shard[:2]}/{sku}.jpg'}\n", "columns",
     r"'shard' is used \(image.path\)"),
    ("id: sku\nformat: tsv\ncolumns: [sku, name]\ntitle: title\n", "columns", "'title' is used"),
    ("id: sku\ndelimiter: '::'\n", "delimiter", "single character"),
    ("id: sku\ngroup: title\n", "group", "needs a title"),
    ("- id\n", r"\(top level\)", "must be a mapping"),
])
def test_errors_name_the_file_and_the_key(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(MappingError, match=rf"^{path}: {key}: .*{problem}"):
        load_mapping(path)


def test_yaml_syntax_error_names_the_file(tmp_path):
    path = write(tmp_path, "id: sku\nproperties: [brand\n")
    with pytest.raises(MappingError, match=rf"^{path}: not valid YAML \(line 3, column 1\): expected ',' or ']'"):
        load_mapping(path)


def test_unknown_name_lists_builtins():
    with pytest.raises(MappingError, match="not a built-in mapping .*fashion44k, homegoods3k, k3m-tsv"):
        load_mapping("fashion45k")


def test_builtin_files_only_use_known_keys():
    # The built-ins double as documentation: they must round-trip through the validator.
    for name in builtin_mappings():
        mapping = load_mapping(name)
        raw = yaml.safe_load(open(mapping.origin))
        assert raw["name"] == name == mapping.name


def test_a_key_given_twice_is_an_error_not_the_last_one_silently(tmp_path):
    path = write(tmp_path, "id: sku\nproperties: [brand]\ntitle: name\nproperties: [colour]\n")
    with pytest.raises(MappingError, match=rf"^{path}: properties: given twice \(lines 2 and 4\)"):
        load_mapping(path)
    path = write(tmp_path, "id: sku\nimage: {archive: a.zip, path: 'a/{id}.jpg', path: 'b/{id}.jpg'}\n")
    with pytest.raises(MappingError, match=rf"^{path}: path: given twice"):
        load_mapping(path)


def test_sharded_image_templates_are_valid(tmp_path):
    path = write(tmp_path, "id: sku\nimage: {archive: a.zip, path: 'images/{sku[:3]}/{sku:0>10}.jpg'}\n")
    assert load_mapping(path).image.path == "images/{sku[:3]}/{sku:0>10}.jpg"
