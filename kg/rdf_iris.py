"""IRIs of the product KG in RDF.

Under a base IRI (default ``https://k3m.example/``, ``--base-iri`` to change; it must end
with ``/`` or ``#``)::

    item      {base}item/{id}            rdf:type k3m:Item
    property  {base}property/{name}      rdf:type rdf:Property; the predicate of a triple
    value     {base}value/{text}         rdf:type k3m:Value
    category  {base}category/{name}      rdf:type k3m:Category
    schema    {base}schema#{term}        k3m:Item, k3m:Value, k3m:Category, k3m:itemId,
                                         k3m:category, k3m:split, k3m:group, k3m:hasImage

``{id}``, ``{name}`` and ``{text}`` are percent-encoded UTF-8 (everything but ``A-Z a-z 0-9
- . _ ~``), so every catalog string gives a valid IRI and two strings never share one.

Values are IRIs, not literals: a value is one node shared by every item and property that
uses it ("Blue" as baseColour and as colour1), exactly as in the build and the graph
database, so SPARQL can join items through a shared value and a value can carry its own
label and statements. Its text is its ``rdfs:label``; item titles are ``rdfs:label`` too.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pyoxigraph

from etl.errors import InvalidValue

DEFAULT_BASE_IRI = "https://k3m.example/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
XSD = "http://www.w3.org/2001/XMLSchema#"


@dataclass(frozen=True)
class Namespaces:
    base: str = DEFAULT_BASE_IRI

    def __post_init__(self):
        if not self.base.endswith(("/", "#")):
            raise InvalidValue(f"base IRI must end with '/' or '#': {self.base!r}")
        try:  # the store loads leniently: the base is the one IRI part not built here
            pyoxigraph.NamedNode(self.base)
        except ValueError as exc:
            raise InvalidValue(f"not an absolute IRI usable as a base: {self.base!r} ({exc})") from None

    @property
    def schema(self) -> str:
        return f"{self.base}schema#"

    @property
    def items(self) -> str:
        return f"{self.base}item/"

    @property
    def properties(self) -> str:
        return f"{self.base}property/"

    @property
    def values(self) -> str:
        return f"{self.base}value/"

    @property
    def categories(self) -> str:
        return f"{self.base}category/"

    def item(self, item_id: str) -> str:
        return self.items + _encode(item_id)

    def property(self, name: str) -> str:
        return self.properties + _encode(name)

    def value(self, text: str) -> str:
        return self.values + _encode(text)

    def category(self, name: str) -> str:
        return self.categories + _encode(name)

    def term(self, name: str) -> str:
        return self.schema + name

    def prefixes(self) -> dict[str, str]:
        """Prefixes for Turtle export and SPARQL queries."""
        return {
            "k3m": self.schema, "item": self.items, "prop": self.properties,
            "val": self.values, "cat": self.categories, "rdf": RDF, "rdfs": RDFS, "xsd": XSD,
        }


def _encode(text: str) -> str:
    return quote(text, safe="")
