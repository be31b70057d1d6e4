"""The smallest takefive app: `takefive serve examples/hello.py:app`, then open http://127.0.0.1:8000/."""

from takefive import App, Response

app = App()


@app.route("/")
def hello(request):  # type: ignore[no-untyped-def]
    return Response(b"Hello, World!", content_type="text/plain")
