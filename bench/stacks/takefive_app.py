"""The three routes on takefive (served by ``takefive run`` behind Mongrel2 or the gateway).

takefive has no template layer of its own (yet): the page calls Jinja2 directly.

Run: ``python -m takefive run bench.stacks.takefive_app:app --send-spec ... --recv-spec ...``
"""

from __future__ import annotations

from bench import content
from takefive.app import App
from takefive.request import Request
from takefive.response import HTMLResponse, JSONResponse, PlainTextResponse, Response

app = App()
_template = content.environment().get_template("page.html")


@app.route("/hello")
async def hello(request: Request) -> Response:
    return PlainTextResponse(content.HELLO)


@app.route("/json")
async def document(request: Request) -> Response:
    return JSONResponse(content.DOCUMENT)


@app.route("/page")
async def page(request: Request) -> Response:
    return HTMLResponse(_template.render(content.PAGE_CONTEXT))
