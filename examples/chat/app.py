"""A WebSocket chat room: every message goes to everyone in the room.

    takefive serve examples/chat/app.py:app        # then open http://127.0.0.1:8000/ twice

The members of the room are kept in this process, so run one handler process (the
default). With several, each process holds only the members whose handshake it served:
broadcast through `takefive.events` instead (see docs/workers.md).
"""

from __future__ import annotations

from collections import defaultdict

from takefive import App, HTMLResponse, Request, WebSocketHandler
from takefive.websocket import TEXT, encode_frame

app = App()

#: front end uuid -> connection ids of the members connected through it
members: defaultdict[str, set[str]] = defaultdict(set)

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>takefive chat</title></head>
<body>
<h1>takefive chat</h1>
<ul id="log"></ul>
<form id="send"><input id="text" autocomplete="off" autofocus><button>Send</button></form>
<p id="status">connecting</p>
<script>
const log = document.getElementById("log");
const status = document.getElementById("status");
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onopen = () => { status.textContent = "connected"; };
ws.onclose = () => { status.textContent = "closed"; };
ws.onmessage = (event) => {
  const item = document.createElement("li");
  item.textContent = event.data;
  log.appendChild(item);
};
document.getElementById("send").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  if (input.value) { ws.send(input.value); input.value = ""; }
};
</script>
</body>
</html>
"""


@app.route("/")
def page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


def broadcast(text: str) -> None:
    frame = encode_frame(TEXT, text.encode())
    for sender, conn_ids in members.items():
        if conn_ids:
            app.deliver(sender, sorted(conn_ids), frame)


@app.websocket("/ws")
class Chat(WebSocketHandler):
    def on_open(self) -> None:
        members[self.sender].add(self.conn_id)
        self.send(f"welcome, you are #{self.conn_id}")

    def on_message(self, data: str | bytes) -> None:
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        broadcast(f"#{self.conn_id}: {text}")

    def on_close(self) -> None:
        members[self.sender].discard(self.conn_id)


@app.on_disconnect
def gone(sender: str, conn_id: str) -> None:
    members[sender].discard(conn_id)
