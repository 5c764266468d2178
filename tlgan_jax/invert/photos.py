"""Photos for inversion: decode (bounded), detect the face, frame it like the generator's faces."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tlgan_jax.generators import to_uint8

# Photos: limits on what `load_photo` decodes (a decompression bomb is refused before decoding).
MAX_PHOTO_PIXELS = 40_000_000
# Framing of the embedded DigiFace generator relative to a face detector's box (w = box side):
# the crop is a square of side FRAME_SCALE·w centred FRAME_SHIFT·w below the box centre.
FRAME_SCALE = 1.3
FRAME_SHIFT = 0.05


class PhotoError(ValueError):
    """A photo that cannot be used. reason: "not_image" (unreadable / not an image),
    "too_large" (over the pixel limit) or "invalid" (anything else: shape, box, …)."""

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason



def _open_image(source) -> tuple[Image.Image, str]:
    """Pillow's lazy open (reads the header only) of a path or raw bytes: (image, name)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise PhotoError("the photo is empty (0 bytes)", "not_image")
        stream, what = io.BytesIO(data), "the upload"
    else:
        path = Path(source)
        if not path.is_file():
            raise PhotoError(f"no such photo file: {path}")
        stream, what = io.BytesIO(path.read_bytes()), str(path)
    try:
        return Image.open(stream), what
    except Image.DecompressionBombError as e:
        raise PhotoError(f"{what} is too large: {e}", "too_large") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise PhotoError(f"{what} is not an image that Pillow can read (PNG, JPEG, WebP, "
                         f"…)", "not_image") from None


def _check_size(img: Image.Image, max_pixels: int) -> None:
    w, h = img.size
    if w * h > max_pixels:
        raise PhotoError(f"the photo is {w}×{h} = {w * h / 1e6:.1f} megapixels; the limit is "
                         f"{max_pixels / 1e6:g} megapixels", "too_large")
    if w < 8 or h < 8:
        raise PhotoError(f"the photo is only {w}×{h} pixels; at least 8×8 is needed")


def check_photo_header(source, *, max_pixels: int = MAX_PHOTO_PIXELS) -> None:
    """The checks of `load_photo` that need only the file's header (readable image, size
    limits), without decoding the pixels; raises PhotoError."""
    img, _ = _open_image(source)
    with img:
        _check_size(img, max_pixels)


def load_photo(source, *, max_pixels: int = MAX_PHOTO_PIXELS) -> np.ndarray:
    """A photo as uint8 RGB [H, W, 3] from a path, raw file bytes, a PIL image or an array
    (uint8 or [-1, 1] float, [H, W, 3] or [H, W]). EXIF orientation is applied; 16-bit grey
    is scaled to 8 bits. Raises PhotoError for anything that is not a readable image or has
    more than max_pixels pixels."""
    if isinstance(source, np.ndarray):
        return _array_photo(source)
    if isinstance(source, Image.Image):
        img, what = source, "the photo"
    else:
        img, what = _open_image(source)
    _check_size(img, max_pixels)
    try:
        if isinstance(source, Image.Image):
            img = ImageOps.exif_transpose(img)             # a copy: the caller's stays as is
        else:
            ImageOps.exif_transpose(img, in_place=True)    # no copy of a large photo
        return _rgb8(img, what)
    except Image.DecompressionBombError as e:
        raise PhotoError(f"the photo is too large: {e}", "too_large") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise PhotoError(f"the photo could not be decoded: {e}", "not_image") from None
    finally:
        if not isinstance(source, Image.Image):
            img.close()


def _rgb8(img: Image.Image, what: str) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a decoded image. 16-bit grey (Pillow modes I;16*, or I with
    values in 0..65535) is scaled to 8 bits, v8 = round(v16 / 257), instead of Pillow's clip
    to 255 (which turns a 16-bit photo white); float images are refused (not_image)."""
    if img.mode.startswith("I;16") or img.mode == "I":
        v = np.asarray(img)
        if v.ndim != 2 or (v.size and (v.min() < 0 or v.max() > 65535)):
            raise PhotoError(f"{what} has 32-bit integer pixels ({img.mode}); save it as an "
                             f"8- or 16-bit PNG or a JPEG", "not_image")
        grey = np.round(v.astype(np.float32) / 257.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if img.mode == "F":
        raise PhotoError(f"{what} has floating-point pixels (mode F); save it as an 8- or "
                         f"16-bit PNG or a JPEG", "not_image")
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"), np.uint8)


def _array_photo(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise PhotoError(f"a photo array must be [H, W, 3] (or [H, W] grey), got shape {a.shape}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)):
        raise PhotoError("a photo array must be uint8 or finite float in [-1, 1]")
    return to_uint8(a)


def detect_face(photo: np.ndarray) -> tuple[float, float, float] | None:
    """The largest frontal face in a uint8 photo as (centre x, centre y, side) in pixels, or
    None (no face, or scikit-image not installed). Uses scikit-image's LBP cascade on a copy
    at most 480 px wide; detections overlapping the largest one are averaged."""
    try:
        from skimage import data as skdata
        from skimage.feature import Cascade
    except ImportError:
        return None
    h, w = photo.shape[:2]
    scale = min(1.0, 480.0 / max(h, w))
    small = photo if scale == 1.0 else np.asarray(
        Image.fromarray(photo).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                      Image.BILINEAR))
    side = min(small.shape[:2])
    detector = Cascade(skdata.lbp_frontal_face_cascade_filename())
    found = detector.detect_multi_scale(img=small, scale_factor=1.2, step_ratio=1,
                                        min_size=(max(24, side // 10),) * 2,
                                        max_size=(side, side))
    if not found:
        return None
    boxes = np.array([[d["c"], d["r"], d["width"], d["height"]] for d in found], np.float64)
    big = boxes[np.argmax(boxes[:, 2] * boxes[:, 3])]

    def overlap(b):                               # intersection over the smaller box
        ix = max(0.0, min(b[0] + b[2], big[0] + big[2]) - max(b[0], big[0]))
        iy = max(0.0, min(b[1] + b[3], big[1] + big[3]) - max(b[1], big[1]))
        return ix * iy / min(b[2] * b[3], big[2] * big[3])

    group = boxes[[overlap(b) > 0.5 for b in boxes]]
    x, y, bw, bh = group.mean(axis=0) / scale
    return float(x + bw / 2), float(y + bh / 2), float(max(bw, bh))


def frame_face(photo, resolution: int, *, box: Sequence[float] | None = None,
               framing: str = "auto", max_pixels: int = MAX_PHOTO_PIXELS
               ) -> tuple[np.ndarray, dict]:
    """Crop and resize a photo to the generator's framing: ([R, R, 3] float32 in [-1, 1], info).

    box: (left, top, right, bottom) in pixels, used as given (then framing is ignored);
    framing: "auto" (detect a face and frame it like the DigiFace faces: a square of side
    FRAME_SCALE·w around the detected box; the centre square when no face is found),
    "center" (the largest centred square) or "full" (the whole photo, squashed to a square).
    Parts of the crop outside the photo repeat its edge pixels. A box of more than max_pixels
    pixels, or one far outside the photo, is refused. info: {"framing": what was
    done ("box", "detected", "center" or "full"), "box": [left, top, right, bottom]}.
    """
    photo = load_photo(photo, max_pixels=max_pixels)
    h, w = photo.shape[:2]
    if box is not None:
        box = [float(v) for v in box]
        if len(box) != 4 or not all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
            raise PhotoError(f"box must be (left, top, right, bottom) with right > left and "
                             f"bottom > top, got {box}")
        how = "box"
    elif framing == "full":
        box, how = [0.0, 0.0, float(w), float(h)], "full"
    elif framing in ("auto", "center"):
        face = detect_face(photo) if framing == "auto" else None
        if face is not None:
            cx, cy, side = face
            cy += FRAME_SHIFT * side
            side *= FRAME_SCALE
            how = "detected"
        else:
            cx, cy, side, how = w / 2, h / 2, float(min(w, h)), "center"
        box = [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]
    else:
        raise PhotoError(f"framing must be 'auto', 'center' or 'full', got {framing!r}")
    left, top, right, bottom = (int(round(v)) for v in box)
    if max(0, -left, -top, right - w, bottom - h) > 4 * max(w, h):
        raise PhotoError(f"box {box} lies far outside the {w}×{h} photo")
    if (right - left) * (bottom - top) > max_pixels:
        raise PhotoError(f"box {box} covers {(right - left) * (bottom - top) / 1e6:.1f} "
                         f"megapixels; the limit is {max_pixels / 1e6:g} megapixels",
                         "too_large")
    # crop[i, j] = photo[clip(top + i), clip(left + j)]: the edge-padded crop, built from the
    # rows and columns inside the photo only (memory: the crop, never a padded photo)
    rows = np.clip(np.arange(top, bottom), 0, h - 1)
    cols = np.clip(np.arange(left, right), 0, w - 1)
    crop = photo[rows[:, None], cols[None, :]]
    out = np.asarray(Image.fromarray(crop).resize((resolution, resolution), Image.LANCZOS),
                     np.float32)
    return out / 127.5 - 1.0, {"framing": how, "box": [left, top, right, bottom]}
