"""The floor: a minimal synchronous pyzmq Mongrel2 handler with precomputed answers.

PULL a request, split off sender/id/path, PUB a ready-made HTTP response. No header
parsing, no routing objects, no asyncio: whatever takefive costs is the distance to this.

Run: ``python -m bench.raw_handler SEND_SPEC RECV_SPEC``
"""

import sys

import zmq

from bench import content


def responses() -> dict[bytes, bytes]:
    out = {}
    for route, ctype in content.CONTENT_TYPES.items():
        body = content.expected_body(route)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
        out[content.PATHS[route].encode()] = head.encode() + body
    return out


def main(send_spec: str, recv_spec: str) -> None:
    answers = responses()
    not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.connect(send_spec)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 100_000)  # as takefive's runner: never drop under a burst
    pub.connect(recv_spec)
    recv, send = pull.recv, pub.send
    while True:
        sender, conn_id, path, _ = recv().split(b" ", 3)
        if path == b"@*":  # disconnect notices and other JSON messages
            continue
        reply = answers.get(path, not_found)
        send(b"%b %d:%b, %b" % (sender, len(conn_id), conn_id, reply))


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2])
    except KeyboardInterrupt:
        pass
