"""The three routes on Starlette (served by uvicorn and by granian).

The page uses Starlette's own Jinja2 support (``Jinja2Templates``).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from bench import content

templates = Jinja2Templates(env=content.environment())


async def hello(request: Request) -> Response:
    return PlainTextResponse(content.HELLO)


async def document(request: Request) -> Response:
    return JSONResponse(content.DOCUMENT)


async def page(request: Request) -> Response:
    return templates.TemplateResponse(request, "page.html", content.PAGE_CONTEXT)


app = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/json", document),
        Route("/page", page),
    ]
)
