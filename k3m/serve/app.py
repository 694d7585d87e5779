"""The HTTP API of the query service (FastAPI): routes, token check, one-line errors.

    GET /health                                   what is served (model, items, index, graph)
    GET /items/{id}/similar?k=10&same=P&where=P=V&category=C&has_image=true&show=P
    GET /items/{id}/completion?property=P&top_k=3  LPM ranking of P's values for the item
    GET /items/{id}/embedding                     the item's vector
    GET /docs, /openapi.json                      the OpenAPI page and schema

Errors are JSON ``{"detail": "one line"}``: 404 for an unknown item, 400 for a parameter
the service cannot use (unknown property, ``where`` without ``=``), 422 for a parameter of
the wrong type or range, 401 without the right ``Authorization: Bearer TOKEN`` when the
service has a token (it must when it listens beyond loopback: k3m/serve/cli.py).
"""
# no `from __future__ import annotations`: FastAPI reads the routes' annotations, which
# refer to names local to create_app (the token check, the service's limits)
import secrets
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from k3m.serve.service import BadRequest, QueryService, UnknownItem

ItemId = Annotated[str, Path(description="the item's id, as in the catalog")]


def create_app(service: QueryService, token: str | None = None) -> FastAPI:
    """The API over an open ``service``; with ``token``, every data route needs it."""
    app = FastAPI(title="K3M query service", version="1",
                  description="Similar items under graph constraints, attribute completion (LPM) and item "
                              "embeddings of one catalog build. See docs/query.md.")
    bearer = HTTPBearer(auto_error=False, description="the service's token (`k3m serve-api --token`)")

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if token is None:
            return
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'",
                                headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorized)]

    @app.exception_handler(UnknownItem)
    async def unknown_item(request: Request, exc: UnknownItem):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = " ".join(str(part) for part in first.get("loc", ()))
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}{more}"}, status_code=422)

    # answers are plain dicts of JSON types already: sent as they are (JSONResponse), not
    # walked again by FastAPI's encoder and response validation (a third of a request's time)
    @app.get("/health", dependencies=guarded, summary="what is served", response_class=JSONResponse)
    def health():
        return JSONResponse(service.health())

    @app.get("/items/{item_id}/similar", dependencies=guarded, summary="the most similar items, under graph constraints",
             response_class=JSONResponse)
    def similar(
        item_id: ItemId,
        k: Annotated[int, Query(ge=1, le=service.settings.max_k, description="how many items")] = 10,
        same: Annotated[list[str], Query(description="same value of this property as the item (repeatable)")] = [],
        same_brand: Annotated[bool, Query(description="same brand (the build's one property named like 'brand')")] = False,
        where: Annotated[list[str], Query(description="PROPERTY=VALUE the item must have (repeatable)")] = [],
        category: Annotated[str | None, Query(description="in this category")] = None,
        has_image: Annotated[bool | None, Query(description="true: only items with an image; false: only without")] = None,
        show: Annotated[list[str], Query(description="also return this property's values (repeatable)")] = [],
    ):
        item_filter = service.item_filter(same, same_brand, where, category, has_image)
        return JSONResponse(service.similar(item_id, k, item_filter, tuple(show)))

    @app.get("/items/{item_id}/completion", dependencies=guarded, response_class=JSONResponse,
             summary="the property's values ranked for the item by the LPM distance less the weighed log frequency of the value (lower = more plausible)")
    def completion(
        item_id: ItemId,
        property: Annotated[str, Query(description="the property to complete, e.g. baseColour")],
        top_k: Annotated[int, Query(ge=1, le=1000, description="how many values")] = 3,
    ):
        return JSONResponse(service.complete(item_id, property, top_k))

    @app.get("/items/{item_id}/embedding", dependencies=guarded, summary="the item's embedding", response_class=JSONResponse)
    def embedding(item_id: ItemId):
        return JSONResponse(service.embedding(item_id))

    return app
