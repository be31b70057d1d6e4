"""The three routes on aiohttp (uvloop, no access log). aiohttp has no template
support of its own: the page is rendered by calling Jinja2 directly.

Run: ``python -m bench.stacks.aiohttp_app --port 8080``.
"""

from __future__ import annotations

import argparse

import uvloop
from aiohttp import web

from bench import content

_template = content.environment().get_template("page.html")


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=content.HELLO)


async def document(request: web.Request) -> web.Response:
    return web.json_response(content.DOCUMENT)


async def page(request: web.Request) -> web.Response:
    return web.Response(text=_template.render(content.PAGE_CONTEXT), content_type="text/html")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/json", document)
    app.router.add_get("/page", page)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(
        make_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=1024,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
