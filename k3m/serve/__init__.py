"""`k3m serve-api BUILD`: the query service, a long-running HTTP API with the index warm.

    k3m serve-api data/builds/shop                       # http://127.0.0.1:8000/docs
    K3M_API_TOKEN=... k3m serve-api data/builds/shop --host 0.0.0.0

Similar items under graph constraints, attribute completion and embedding lookup, as JSON
(FastAPI + uvicorn; OpenAPI at /openapi.json, pages at /docs). See docs/query.md.
"""
