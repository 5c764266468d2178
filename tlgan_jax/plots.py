"""PNG output: labelled image grids (pillow) and metric curves (matplotlib, imported lazily)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tlgan_jax.files import atomic_open
from tlgan_jax.generators import to_uint8


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def image_grid(images, row_labels: Sequence[str] = (), col_labels: Sequence[str] = (),
               title: str = "", cell: int | None = None) -> Image.Image:
    """A labelled grid from images [rows, cols, H, W, 3] in [-1, 1] (or uint8).

    Rows are faces, columns are steps; labels are drawn left of each row / above each column.
    `cell` resizes each image to cell×cell (nearest for upscaling small images, Lanczos down).
    """
    images = np.asarray(images)
    if images.ndim != 5:
        raise ValueError(f"image_grid needs [rows, cols, H, W, C], got shape {images.shape}")
    if images.dtype != np.uint8:
        images = to_uint8(images)
    rows, cols, h, w, _ = images.shape
    cell = cell or max(h, 96)
    font = _font(max(10, cell // 8))
    left = 0 if not row_labels else max(int(font.getlength(s)) for s in row_labels) + 10
    top_title = 0 if not title else cell // 5 + 8
    top = top_title + (0 if not col_labels else cell // 6 + 8)
    canvas = Image.new("RGB", (left + cols * cell, top + rows * cell), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((left + 4, 4), title, fill="black", font=_font(max(12, cell // 6)))
    for c, s in enumerate(col_labels):
        x = left + c * cell + cell // 2 - int(font.getlength(s)) // 2
        draw.text((x, top_title + 2), s, fill="black", font=font)
    for r in range(rows):
        if row_labels:
            draw.text((4, top + r * cell + cell // 2 - cell // 16), row_labels[r], fill="black",
                      font=font)
        for c in range(cols):
            im = Image.fromarray(images[r, c])
            resample = Image.NEAREST if cell >= h else Image.LANCZOS
            canvas.paste(im.resize((cell, cell), resample), (left + c * cell, top + r * cell))
    return canvas


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write `image` as a PNG to exactly `path`, atomically."""
    with atomic_open(path) as f:
        image.save(f, format="PNG")
    return Path(path)
