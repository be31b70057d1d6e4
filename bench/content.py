"""What every stack serves: the same three routes with the same bodies.

``/hello``  plain text ``Hello, World!``
``/json``   :data:`DOCUMENT` as JSON
``/page``   :data:`PAGE_TEMPLATE` rendered by Jinja2 with :data:`PAGE_CONTEXT` (about 4 KB),
            rendered on every request (the raw pyzmq floor alone precomputes it).

Every stack imports this module, so a sanity check can compare each answer with
:func:`expected_body`.
"""

from __future__ import annotations

import json
from typing import Any

import jinja2

HELLO = "Hello, World!"

#: The JSON document (about 600 bytes serialized).
DOCUMENT: dict[str, Any] = {
    "id": 1234,
    "name": "takefive benchmark",
    "active": True,
    "score": 98.6,
    "tags": ["zeromq", "mongrel2", "asyncio", "http"],
    "owner": {"id": 7, "login": "brubeck", "email": "brubeck@example.org"},
    "items": [
        {
            "sku": f"SKU-{i:04d}",
            "title": f"Item number {i}",
            "price": round(i * 1.25, 2),
            "stock": i * 3,
        }
        for i in range(1, 7)
    ],
}

PAGE_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
</head>
<body>
<h1>{{ title }}</h1>
<p>{{ intro }}</p>
<table>
<thead><tr><th>#</th><th>Name</th><th>Description</th><th>Price</th></tr></thead>
<tbody>
{% for row in rows %}<tr class="{{ loop.cycle('odd', 'even') }}">\
<td>{{ row.id }}</td><td>{{ row.name }}</td><td>{{ row.description }}</td>\
<td>{{ "%.2f"|format(row.price) }}</td></tr>
{% endfor %}</tbody>
</table>
<p>{{ rows|length }} rows &amp; a footer.</p>
</body>
</html>
"""

PAGE_CONTEXT: dict[str, Any] = {
    "title": "Benchmark page <rendered by Jinja2>",
    "intro": "A page of about four kilobytes: a loop, escaping and a filter on every request.",
    "rows": [
        {
            "id": i,
            "name": f"Row {i} & co",
            "description": f"Description of row {i}, long enough to make the page realistic",
            "price": i * 2.5,
        }
        for i in range(1, 27)
    ],
}

ROUTES = ("hello", "json", "page")
PATHS = {"hello": "/hello", "json": "/json", "page": "/page"}
CONTENT_TYPES = {
    "hello": "text/plain",
    "json": "application/json",
    "page": "text/html",
}


def environment() -> jinja2.Environment:
    """The Jinja2 environment every stack renders the page with (template name ``page.html``)."""
    return jinja2.Environment(
        loader=jinja2.DictLoader({"page.html": PAGE_TEMPLATE}),
        autoescape=True,
    )


def render_page() -> str:
    return environment().get_template("page.html").render(PAGE_CONTEXT)


def expected_body(route: str) -> bytes:
    if route == "hello":
        return HELLO.encode()
    if route == "json":
        return json.dumps(DOCUMENT).encode()
    if route == "page":
        return render_page().encode()
    raise KeyError(route)


def body_matches(route: str, body: bytes) -> bool:
    """True when ``body`` is the right answer for ``route`` (JSON compared as data)."""
    if route == "json":
        try:
            return bool(json.loads(body) == DOCUMENT)
        except ValueError:
            return False
    return body == expected_body(route)
