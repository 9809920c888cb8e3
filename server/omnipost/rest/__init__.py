"""The REST surface (/v1): the services of services.py over plain HTTP, beside /mcp (PRODUCT §12).

routes.py: the operation table (method, path, request and answer models, handler); app.py: the ASGI app that
authenticates, rate-limits and answers every route, errors as the §3 object; openapi.py: the OpenAPI 3.1 document
built from the same table and models (committed as openapi.json); reference.py: its HTML reference page.
"""
