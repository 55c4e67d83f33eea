"""The operator console: static files served by the service itself.

The console is plain HTML, CSS and JavaScript with no outside network (no
CDN, no map tiles). The files hold no data: everything comes from the API
with the operator's token, so they are public.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from dispatch.http import allow

__all__ = ["routes"]

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
_CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:;"
    " style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)

routes = web.RouteTableDef()


@routes.get("/")
@allow()
async def root(request: web.Request) -> web.Response:
    """Send browsers to the console."""
    del request
    raise web.HTTPFound("/console/")


@routes.get("/console/{name:[a-z0-9_.-]*}")
@allow()
async def console_file(request: web.Request) -> web.Response:
    """One file of the console; the bare path is its page."""
    name = request.match_info["name"] or "index.html"
    suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix not in _TYPES or name.startswith("."):
        raise web.HTTPNotFound()
    path = resources.files("dispatch").joinpath("static", name)
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(
        body=path.read_bytes(),
        content_type=_TYPES[suffix],
        charset="utf-8",
        headers={
            "Content-Security-Policy": _CSP,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )
