"""Upload an image; a pool of workers makes the thumbnail; the page serves it back.

    takefive run examples/thumbnails/app.py:app --send-spec ... --recv-spec ...
    takefive worker examples/thumbnails/tasks.py:thumbnail --service tcp://127.0.0.1:5600

The handler process holds the service dispatcher (``THUMBS_DISPATCHER``, default
``tcp://127.0.0.1:5600``); workers connect to it. Making a thumbnail is idempotent,
so a call whose worker dies is retried on another one. Thumbnails are kept in this
process's memory (a small LRU): enough for an example, not for production.
"""

from __future__ import annotations

import hashlib
import html
import os
from collections import OrderedDict

from takefive import App, HTMLResponse, HTTPError, Request, Response, UploadFile
from takefive.services import Dispatcher, ServiceError

app = App()
ENDPOINT = os.environ.get("THUMBS_DISPATCHER", "tcp://127.0.0.1:5600")
KEEP = 256  # thumbnails kept in memory
thumbs: OrderedDict[str, bytes] = OrderedDict()
state: dict[str, Dispatcher] = {}

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Thumbnails</title></head>
<body>
<h1>Thumbnails</h1>
<form method="post" action="/upload" enctype="multipart/form-data">
  <input type="file" name="image" accept="image/*"> <button>Upload</button>
</form>
{body}
</body></html>
"""


@app.on_startup
async def start() -> None:
    state["dispatcher"] = Dispatcher(ENDPOINT, timeout=30)


@app.on_shutdown
async def stop() -> None:
    if "dispatcher" in state:
        await state.pop("dispatcher").close()


@app.route("/")
def index(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE.format(body=""))


@app.route("/upload", methods=["POST"])
async def upload(request: Request) -> HTMLResponse:
    image = request.form().get("image")
    if not isinstance(image, UploadFile) or not image.data:
        raise HTTPError(400, "send an image in the form field 'image'")
    try:
        png = await state["dispatcher"].call(
            "thumbnail", image.data, encoding="raw", idempotent=True, timeout=30
        )
    except ServiceError as exc:
        if exc.code == "failed":  # the worker could not read it
            raise HTTPError(400, f"cannot make a thumbnail: {exc}") from None
        raise HTTPError(503, f"no thumbnail worker answered: {exc}") from None
    name = hashlib.sha256(png).hexdigest()[:16] + ".png"
    thumbs[name] = png
    thumbs.move_to_end(name)
    while len(thumbs) > KEEP:
        thumbs.popitem(last=False)
    original = html.escape(image.filename or "upload")
    body = f'<p>{original}:</p><p><img src="/thumbs/{name}" alt="{original}"></p>'
    return HTMLResponse(PAGE.format(body=body))


@app.route("/thumbs/{name}")
def thumb(request: Request, name: str) -> Response:
    png = thumbs.get(name)
    if png is None:
        raise HTTPError(404, "no such thumbnail")
    return Response(png, content_type="image/png", headers={"Cache-Control": "max-age=3600"})
