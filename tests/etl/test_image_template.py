"""Image path templates: fields, slices for sharded layouts, format specs, missing fields."""
from __future__ import annotations

import pytest

from etl.image_template import ImageTemplate, TemplateError


def fill(template: str, **values):
    return ImageTemplate.parse(template).fill(values.get)


def test_plain_sliced_and_formatted_placeholders():
    assert fill("images/{id}.jpg", id="0108775015") == ("images/0108775015.jpg", None)
    assert fill("images/{id[:3]}/{id}.jpg", id="0108775015") == ("images/010/0108775015.jpg", None)
    assert fill("{id[-2:]}/{id[2:5]}.png", id="15970") == ("70/970.png", None)
    assert fill("images/{id:0>10}.jpg", id="108775015") == ("images/0108775015.jpg", None)
    assert fill("images/{id:010d}.jpg", id="108775015") == ("images/0108775015.jpg", None)
    assert fill("{gender.name}/{id}.jpg", id="1", **{"gender.name": "Men"}) == ("Men/1.jpg", None)
    assert ImageTemplate.parse("{a[:2]}/{id}/{b:>4}").fields == ["a", "b"]


def test_a_missing_or_unfit_value_is_a_reason_not_an_empty_path():
    assert fill("{shard}/{id}.jpg", id="1") == (None, "template_field_missing")
    assert fill("{shard}/{id}.jpg", id="1", shard="  ") == (None, "template_field_missing")
    assert fill("{id[20:]}/{id}.jpg", id="1") == (None, "template_field_missing")
    assert fill("{id:08d}.jpg", id="AB-12") == (None, "template_value_mismatch")


@pytest.mark.parametrize("template, problem", [
    ("x/{}.jpg", "empty placeholder"),
    ("x/{id[:3.jpg", "unbalanced brace"),
    ("x/{id[a:b]}.jpg", "is not FIELD"),
    ("x/{id[1:2:3]}.jpg", "is not FIELD"),
    ("x/{id:q}.jpg", "bad format spec"),
    ("x/{a..b}.jpg", "empty path segment"),
])
def test_malformed_placeholders(template, problem):
    with pytest.raises(TemplateError, match=problem):
        ImageTemplate.parse(template)
