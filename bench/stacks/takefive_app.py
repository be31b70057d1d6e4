"""The three routes on takefive (served by ``takefive run`` behind Mongrel2 or the gateway).

Each stack is written the way its own documentation writes such an endpoint. None of the
three routes waits for anything, and takefive's way to write such a handler is a plain
``def`` (docs/app.md, examples/hello.py): the runner answers it at once, with no task.
(Starlette's is ``async def``: it runs a plain ``def`` endpoint in a thread pool.)
``app_async`` is the same app with ``async def`` handlers; the handler-only figure
measures it too, for the record.

takefive has no template layer of its own (yet): the page calls Jinja2 directly.

Run: ``python -m takefive run bench.stacks.takefive_app:app --send-spec ... --recv-spec ...``
"""

from __future__ import annotations

from bench import content
from takefive.app import App
from takefive.request import Request
from takefive.response import HTMLResponse, JSONResponse, PlainTextResponse, Response

_template = content.environment().get_template("page.html")

app = App()


@app.route("/hello")
def hello(request: Request) -> Response:
    return PlainTextResponse(content.HELLO)


@app.route("/json")
def document(request: Request) -> Response:
    return JSONResponse(content.DOCUMENT)


@app.route("/page")
def page(request: Request) -> Response:
    return HTMLResponse(_template.render(content.PAGE_CONTEXT))


app_async = App()


@app_async.route("/hello")
async def hello_async(request: Request) -> Response:
    return PlainTextResponse(content.HELLO)


@app_async.route("/json")
async def document_async(request: Request) -> Response:
    return JSONResponse(content.DOCUMENT)


@app_async.route("/page")
async def page_async(request: Request) -> Response:
    return HTMLResponse(_template.render(content.PAGE_CONTEXT))
