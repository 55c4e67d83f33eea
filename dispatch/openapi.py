"""The OpenAPI 3.1 document of ``/v1``, generated from the code.

Each handler states its request body, query and response schemas with
:func:`describe`; :func:`document` walks the application's routes and
turns those msgspec structs into JSON Schema (2020-12, which OpenAPI 3.1
uses unchanged) under ``components/schemas``. The roles of each operation
come from its :func:`dispatch.http.allow` rule (``x-roles``).

``python -m dispatch.openapi`` prints the document; ``docs/openapi.json``
is that output, kept in step with the code by a test.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from dispatch.http import Handler, allow, allowed_roles
from dispatch.schemas import ErrorBody

__all__ = ["Doc", "describe", "doc_of", "document", "routes"]

_DOC = "__homecare_doc__"
_REF = "#/components/schemas/{name}"
_METHODS = ("get", "post", "put", "patch", "delete")
# Statuses every authenticated operation may answer with, and why.
_ERRORS = {
    "400": "bad input (stable code in the body)",
    "401": "no valid token",
    "403": "the role may not do this",
    "404": "no such object, or one the caller may not see",
    "409": "collides with the order's current state",
    "422": "idempotency key reused with another body",
    "503": "PostgreSQL or Redis unavailable",
}
_PUBLIC_ERRORS = ("400", "404", "503")

#: Marks text responses (``/metrics``).
TEXT = "text/plain"


@dataclass(frozen=True, slots=True)
class Doc:
    """What :func:`describe` records on a handler."""

    response: Any = None
    status: int = 200
    body: Any = None
    query: Any = None
    headers: tuple[tuple[str, bool, str], ...] = ()
    content_type: str = "application/json"
    hidden: bool = False


def describe(
    *,
    response: Any = None,
    status: int = 200,
    body: Any = None,
    query: Any = None,
    headers: tuple[tuple[str, bool, str], ...] = (),
    content_type: str = "application/json",
    hidden: bool = False,
) -> Callable[[Handler], Handler]:
    """State a handler's contract for the OpenAPI document.

    Args:
        response: Type of the success body (a struct, ``list[...]``).
        status: Success status.
        body: Struct of the JSON request body, if any.
        query: Struct of the query string, if any.
        headers: Request headers as ``(name, required, description)``.
        content_type: Media type of the success body.
        hidden: Leave the route out of the document (console files).
    """

    def mark(handler: Handler) -> Handler:
        setattr(
            handler,
            _DOC,
            Doc(response, status, body, query, headers, content_type, hidden),
        )
        return handler

    return mark


def doc_of(handler: object) -> Doc | None:
    """The contract :func:`describe` recorded, or ``None``."""
    found = getattr(handler, _DOC, None)
    return found if isinstance(found, Doc) else None


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if options is None:
        return schema
    kept = [o for o in options if o != {"type": "null"}]
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**(kept[0] if len(kept) == 1 else {"anyOf": kept}), **rest}


def _parameters(
    query: Any, components: dict[str, Any], path: str
) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 64},
        }
        for name in _path_names(path)
    ]
    if query is not None:
        struct = components[query.__name__]
        required = set(struct.get("required", []))
        for name, prop in struct["properties"].items():
            schema = _strip_null(prop)
            param: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": schema,
            }
            if schema.get("type") == "array":
                param |= {"style": "form", "explode": True}
            params.append(param)
    return params


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _summary(handler: object) -> tuple[str, str]:
    text = inspect.getdoc(handler) or ""
    summary, _, rest = text.partition("\n")
    return summary.strip(), rest.strip()


def document(
    routes: Iterable[tuple[str, str, object]], *, version: str = "1.0.0"
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``(method, path, handler)`` triples.

    Only handlers with :func:`describe` are documented (websocket
    endpoints have their own document); hidden ones and ``HEAD`` routes are
    left out.
    """
    ops: list[tuple[str, str, object, Doc]] = []
    for method, path, handler in routes:
        contract = doc_of(handler)
        if contract is not None and method.lower() in _METHODS and not contract.hidden:
            ops.append((method.lower(), path, handler, contract))
    types: list[Any] = [ErrorBody]
    for _, _, _, contract in ops:
        types.extend(t for t in (contract.body, contract.query) if t is not None)
        if contract.response is not None and contract.content_type != TEXT:
            types.append(contract.response)
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    by_type = dict(zip((id(t) for t in types), schemas, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for method, path, handler, contract in sorted(ops, key=lambda o: (o[1], o[0])):
        roles = allowed_roles(handler)
        summary, description = _summary(handler)
        op: dict[str, Any] = {
            "operationId": getattr(handler, "__name__", "op"),
            "summary": summary,
            "x-roles": sorted(str(r) for r in roles or ()),
        }
        if description:
            op["description"] = description
        params = _parameters(contract.query, components, path)
        params.extend(
            {
                "name": name,
                "in": "header",
                "required": required,
                "description": text,
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            }
            for name, required, text in contract.headers
        )
        if params:
            op["parameters"] = params
        if contract.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": by_type[id(contract.body)]}},
            }
        if contract.content_type == TEXT:
            success = {TEXT: {"schema": {"type": "string"}}}
        elif contract.response is not None:
            success = {
                contract.content_type: {"schema": by_type[id(contract.response)]}
            }
        else:
            success = {contract.content_type: {"schema": {}}}
        responses: dict[str, Any] = {
            str(contract.status): {"description": "success", "content": success}
        }
        public = not roles
        for code in _ERRORS:
            if not public or code in _PUBLIC_ERRORS:
                responses[code] = {"$ref": f"#/components/responses/Error{code}"}
        op["responses"] = responses
        if not public:
            op["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[method] = op
    # query structs become parameters; only bodies and responses stay schemas
    for _, _, _, contract in ops:
        if contract.query is not None:
            components.pop(contract.query.__name__, None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "homecare-dispatch",
            "version": version,
            "description": (
                "Home-care orders for elders living at home: booking, dispatch"
                " to caregivers and vendors, and tracking to closure. Every"
                " operation names the roles that may call it in x-roles."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "responses": {
                f"Error{code}": {
                    "description": text,
                    "content": {"application/json": {"schema": by_type[id(ErrorBody)]}},
                }
                for code, text in _ERRORS.items()
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def app_routes(app: web.Application) -> list[tuple[str, str, object]]:
    """The ``(method, path, handler)`` triples an application serves."""
    found: list[tuple[str, str, object]] = []
    for route in app.router.routes():
        resource = route.resource
        if resource is not None:
            found.append((route.method, resource.canonical, route.handler))
    return found


def dumps(doc: dict[str, Any]) -> str:
    """The document as the committed ``docs/openapi.json`` holds it."""
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


routes = web.RouteTableDef()


@routes.get("/v1/openapi.json")
@allow()
@describe(response=dict[str, Any])
async def openapi_json(request: web.Request) -> web.Response:
    """This document."""
    return web.json_response(document(app_routes(request.app)))


def main() -> None:
    """Print the document of a full application (``python -m dispatch.openapi``)."""
    # run as __main__ this module is a second copy: use the imported one,
    # whose Doc class the handlers were described with
    from dispatch import openapi as this
    from dispatch.app import ROLES, route_tables

    triples = [
        (d.method, d.path, d.handler)
        for table in route_tables(ROLES)
        for d in table
        if isinstance(d, web.RouteDef)
    ]
    sys.stdout.write(this.dumps(this.document(triples)))


if __name__ == "__main__":
    main()
