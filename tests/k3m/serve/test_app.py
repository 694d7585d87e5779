"""The query service over real HTTP: a real uvicorn server on a free loopback port, the real
embedded graph server with the 600-item fashion44k slice loaded, the micro checkpoint's real
embeddings of it. Answers are checked against the query scripts' own functions."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from etl.catalog_build import CatalogBuild
from k3m.query import ItemFilter, similar_items
from k3m.query.complete import Completer
from k3m.serve.app import create_app
from k3m.serve.service import SIMILAR_ITEM_FIELDS, QueryService, ServiceSettings

TOKEN = "correct horse battery staple"


class Running:
    """A uvicorn server in a thread; ``url`` once it listens."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def get(url: str, token: str | None = None) -> tuple[int, dict | str, dict]:
    """(status, JSON body (or text), headers) of a GET."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, body, headers = response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, body, headers = exc.code, exc.read().decode(), dict(exc.headers)
    try:
        return status, json.loads(body), headers
    except json.JSONDecodeError:
        return status, body, headers


@pytest.fixture(scope="module")
def service(loaded_db, query_build):
    service = QueryService(ServiceSettings(build=query_build, database=loaded_db.database), db=loaded_db)
    yield service
    service.close()


@pytest.fixture(scope="module")
def api(service):
    running = Running(create_app(service))
    yield running.url
    running.stop()


@pytest.fixture(scope="module")
def guarded_api(service):
    running = Running(create_app(service, token=TOKEN))
    yield running.url
    running.stop()


def an_item_with(build_path, prop: str) -> tuple[str, str]:
    """(id, value) of the first item having ``prop`` among items sharing the value with others."""
    build = CatalogBuild.open(build_path)
    p = build.properties.index(prop)
    triples = np.asarray(build.triples)
    facts = triples[triples[:, 1] == p]
    values, counts = np.unique(facts[:, 2], return_counts=True)
    common = values[counts >= 5]
    item = facts[np.isin(facts[:, 2], common)][0]
    return str(build.items["item_id"].iloc[int(item[0])]), build.values[int(item[2])]


def test_health_says_what_is_served(api, query_store, loaded_db):
    status, body, headers = get(f"{api}/health")
    assert status == 200 and headers["content-type"] == "application/json"
    assert body["items"] == 600 and body["model_id"] == query_store.model_id and body["index"]["kind"] == "exact"
    assert body["graph"]["database"] == loaded_db.database and body["strategy"] == "client"


def test_similar_items_are_the_query_scripts_answer(api, loaded_db, query_store, query_build):
    item_id = str(query_store.ids[5])
    status, body, _ = get(f"{api}/items/{item_id}/similar?k=7")
    assert status == 200
    expected = similar_items(loaded_db, item_id, 7, store=query_store).to_dict()
    assert [h["id"] for h in body["hits"]] == [h["id"] for h in expected["hits"]]
    for got, want in zip(body["hits"], expected["hits"]):  # the display fields match the graph's
        assert {k: got[k] for k in ("title", "category", "has_image")} == {k: want[k] for k in ("title", "category", "has_image")}
        assert got["score"] == pytest.approx(want["score"], abs=1e-6)
    assert body["item"]["id"] == item_id and body["constraint"] == "no constraint" and body["model_id"] == query_store.model_id
    assert set(body) == set(expected) and all(set(h) == set(SIMILAR_ITEM_FIELDS) for h in body["hits"] + [body["item"]])


def test_graph_constraints_filter_the_hits(api, loaded_db, query_store, query_build):
    item_id, brand = an_item_with(query_build, "brandName")
    query = urllib.parse.urlencode([("k", 10), ("same", "brandName"), ("show", "brandName"), ("show", "baseColour")])
    status, body, _ = get(f"{api}/items/{urllib.parse.quote(item_id)}/similar?{query}")
    assert status == 200 and body["hits"]
    expected = similar_items(loaded_db, item_id, 10, ItemFilter(same=("brandName",)), query_store).to_dict()
    assert [h["id"] for h in body["hits"]] == [h["id"] for h in expected["hits"]]
    assert all(h["properties"]["brandName"] == brand for h in body["hits"])
    assert body["constraint"] == "same brandName as the item"
    # --same-brand finds the brand property; where= takes PROPERTY=VALUE with spaces and all
    colour_item, colour = an_item_with(query_build, "baseColour")
    query = urllib.parse.urlencode([("where", f"baseColour={colour}"), ("has_image", "true"), ("show", "baseColour")])
    status, body, _ = get(f"{api}/items/{urllib.parse.quote(colour_item)}/similar?{query}")
    assert status == 200 and body["hits"] and all(h["properties"]["baseColour"] == colour and h["has_image"]
                                                  for h in body["hits"])
    status, body, _ = get(f"{api}/items/{urllib.parse.quote(item_id)}/similar?same_brand=true")
    assert status == 200 and body["constraint"] == "same brandName as the item"


@pytest.mark.parametrize("path, status, says", [
    ("/items/no-such-item/similar", 404, "item 'no-such-item' is not in build"),
    ("/items/no-such-item/embedding", 404, "is not in build"),
    ("/items/{id}/similar?k=0", 422, "query k: Input should be greater than or equal to 1"),
    ("/items/{id}/similar?k=ten", 422, "query k: Input should be a valid integer"),
    ("/items/{id}/similar?has_image=perhaps", 422, "query has_image"),
    ("/items/{id}/similar?where=baseColour", 400, "--where expects PROPERTY=VALUE, got 'baseColour'"),
    ("/items/{id}/similar?same=brandNme", 400, "property 'brandNme' is not in the build (close: brandName"),
    ("/items/{id}/similar?show=colour", 400, "property 'colour' is not in the build"),
    ("/items/{id}/completion", 422, "query property: Field required"),
    ("/items/{id}/completion?property=Fabrik", 400, "property 'Fabrik' is not in the build's vocabulary"),
])
def test_errors_are_one_line_with_a_4xx_code(api, query_store, path, status, says):
    got, body, _ = get(api + path.replace("{id}", str(query_store.ids[0])))
    assert got == status and says in body["detail"] and "\n" not in body["detail"], body


def test_the_service_holds_the_matrix_in_memory(service, query_store):
    assert isinstance(query_store.matrix, np.memmap) and not isinstance(service.store.matrix, np.memmap)
    assert np.array_equal(service.store.matrix, query_store.matrix)


def test_embedding_lookup_is_the_stored_row(api, query_store):
    item_id = str(query_store.ids[42])
    status, body, _ = get(f"{api}/items/{item_id}/embedding")
    assert status == 200 and body["id"] == item_id and body["dim"] == query_store.matrix.shape[1]
    assert np.array_equal(np.asarray(body["embedding"], dtype=np.float32), np.asarray(query_store.matrix[42]))
    assert body["created"] == query_store.created[42]


def test_completion_is_the_completers_ranking(api, query_store, query_build):
    item_id, colour = an_item_with(query_build, "baseColour")
    status, body, _ = get(f"{api}/items/{item_id}/completion?property=baseColour&top_k=4")
    assert status == 200 and body["observed"] == [colour] and len(body["suggestions"]) == 4
    build = CatalogBuild.open(query_build)
    completer = Completer(query_store, build, "baseColour")
    values, scores = completer.rank(query_store.rows([item_id]), 4)
    assert [s["value"] for s in body["suggestions"]] == [build.values[v] for v in values[0]]
    assert [s["score"] for s in body["suggestions"]] == pytest.approx(scores[0].tolist(), rel=1e-6)
    distances = completer.distances(values, scores)
    assert [s["distance"] for s in body["suggestions"]] == pytest.approx(distances[0].tolist(), rel=1e-6)
    assert body["prior_weight"] == completer.prior_weight
    assert [s["rank"] for s in body["suggestions"]] == [1, 2, 3, 4]


def test_openapi_page_and_schema(api):
    status, schema, _ = get(f"{api}/openapi.json")
    assert status == 200 and {"/items/{item_id}/similar", "/items/{item_id}/completion",
                              "/items/{item_id}/embedding", "/health"} <= set(schema["paths"])
    status, page, _ = get(f"{api}/docs")
    assert status == 200 and "swagger" in page.lower()


def test_a_token_is_required_when_set(guarded_api, query_store):
    item = f"{guarded_api}/items/{query_store.ids[0]}/similar"
    for token in (None, "wrong"):
        status, body, headers = get(item, token)
        assert status == 401 and "Bearer" in body["detail"] and headers["www-authenticate"] == "Bearer"
    assert get(item, TOKEN)[0] == 200 and get(f"{guarded_api}/health", TOKEN)[0] == 200
    assert get(f"{guarded_api}/health")[0] == 401
