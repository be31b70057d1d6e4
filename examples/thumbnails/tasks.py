"""The thumbnail worker: image bytes in, PNG thumbnail bytes out (Pillow).

    takefive worker examples/thumbnails/tasks.py:thumbnail --service tcp://127.0.0.1:5600

Run as many as you like, on any machine that can reach the dispatcher; the image
travels in the message (the ``raw`` payload encoding), so no shared disk is needed.
"""

from __future__ import annotations

import io
import os

from PIL import Image, UnidentifiedImageError

SIZE = int(os.environ.get("THUMB_SIZE", "128"))
MAX_PIXELS = 40_000_000  # refuse decompression bombs


def thumbnail(data: bytes) -> bytes:
    if not isinstance(data, bytes):
        raise ValueError("send the image as raw bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"image too large ({image.width}x{image.height})")
            image.thumbnail((SIZE, SIZE))
            out = io.BytesIO()
            image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB").save(out, "PNG")
    except UnidentifiedImageError:
        raise ValueError("not an image Pillow can read") from None
    return out.getvalue()
