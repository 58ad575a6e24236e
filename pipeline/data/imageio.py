"""Decoding and resizing of ultrasound images, shared by every data source.

Reading (`read_input_file`, for images and manifests alike): only a regular file is opened,
checked with stat before the open and again on the open descriptor (a named pipe would block
the stage for ever, a device such as /dev/zero never ends), and only up to a byte limit,
checked before reading; a file that changes size while it is read is refused.

Decoding (`read_image`): PNG, JPEG, BMP and TIFF only (other decoders are not even tried).
Memory is bounded by `data.max_pixels`. A file is read only if it holds at most
`BYTES_PER_PIXEL` bytes per pixel of it plus `METADATA_BYTES` (no image file within it holds
more). Its header must then describe an image whose padded square, the one `fit_square` makes
(side = the longer side), has at most data.max_pixels pixels, checked before any pixel is
decoded: a 10 x 100000 strip decodes to 10^6 pixels but pads to 10^10. Every array made after
that is a fixed multiple of the square's pixels: the decoded image (at most 4 bytes a pixel),
one conversion of it and the padded square (1 or 3 bytes a pixel); 16-bit values are scaled in
32-bit integers, not 64-bit floats. Measured peak for one image, its uncompressed file
included: 5 (8-bit gray) to 20 (RGBA, LA or 32-bit TIFF) bytes per pixel of the square;
`sources.resize_all` decodes two at a time. PIL's own decompression-bomb guard is turned into
an error too. Images smaller than `MIN_SIDE` pixels on a side are refused: they carry no
anatomy. Pixel formats are brought to 8 bits:

- 8-bit grayscale ("L") is used as is; 1-bit ("1") becomes 0/255.
- 16-bit grayscale ("I;16", "I;16B", ...) is scaled by its dtype range, v * 255 / 65535,
  rounded (not by the image's own min/max, which would change the brightness, the echo
  intensity clinicians read, from image to image). An image whose values all stay below 4096
  (12-bit data stored in 16 bits) comes out nearly black: a warning names it.
- Multi-page files (a TIFF stack) are refused: which page is the image is not to be guessed. 32-bit integer images ("I", as some TIFFs
  decode) are taken as 16-bit: values are clipped to 0..65535 and scaled the same way.
- Palette ("P"), RGB, CMYK and YCbCr images are converted to RGB; RGBA / LA / palette
  transparency is composited over black, because a transparent pixel shows no echo.
- Floating-point images ("F") are refused: their scale is unknown.

Then `channels == 1` takes luminance (ITU-R 601-2: 0.299 R + 0.587 G + 0.114 B, PIL's "L"
conversion) and `channels == 3` keeps RGB (grayscale is replicated to three channels).

Resizing (`fit_square`) must not distort anatomy: depth is vertical in B-mode and
millimetres per pixel are the same in both directions, so stretching one axis would change
layer thicknesses and shapes. The image is padded to a square with black (no echo): a wide
image gets rows added at the bottom (deeper than the scan reached), a tall image gets columns
added equally on both sides (beyond the probe's footprint). The square is then resampled to
`size`: area averaging (PIL BOX) when shrinking, so every source pixel counts once and speckle
is not aliased; bilinear when enlarging, where area averaging would be blocky.
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pipeline.core.errors import DataError

FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
MIN_SIDE = 8  # pixels; smaller images carry no anatomy (and would be mostly padding)
# An image file holds at most this many bytes per pixel (16-bit RGBA or CMYK, uncompressed) plus
# metadata (EXIF, ICC profile, thumbnails); a bigger file is not an image within data.max_pixels.
BYTES_PER_PIXEL = 8
METADATA_BYTES = 64 << 20
FILE_TYPES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
              (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def file_type(mode: int) -> str | None:
    """None for a regular file, else what the file is in words ('a named pipe (FIFO)', ...), from st_mode."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in FILE_TYPES if test(mode)), "not a regular file")


def max_file_bytes(max_pixels: int) -> int:
    """The largest image file accepted under data.max_pixels (see BYTES_PER_PIXEL)."""
    return BYTES_PER_PIXEL * max_pixels + METADATA_BYTES


def read_input_file(path: str | Path, *, max_bytes: int, at: str, what: str = "file", limit_key: str = "") -> bytes:
    """The bytes of the regular file `path`, at most `max_bytes` of them; DataError otherwise.

    The file type is checked with stat before opening (opening a named pipe blocks until a
    writer comes) and again on the descriptor, opened non-blocking, so a file swapped in
    between cannot slip through. The size from that descriptor is checked against `max_bytes`
    before reading, and exactly that many bytes are read: a file that changes size while it is
    read is refused, never read without end. `at` starts every message; `limit_key` names the
    setting that raises `max_bytes`.
    """
    def refuse_type(mode: int) -> None:
        kind = file_type(mode)
        if kind is not None:
            raise DataError(f"{at}: is {kind}, not a regular file; expected a {what} (a regular file, or a link "
                            f"to one)")

    try:
        refuse_type(os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataError(f"{at}: {what} not found") from None
    except OSError as e:
        raise DataError(f"{at}: cannot read the {what}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        refuse_type(info.st_mode)
        if info.st_size > max_bytes:
            raise DataError(f"{at}: {info.st_size} bytes, more than the {max_bytes} accepted for one {what}"
                            + (f" (set by {limit_key})" if limit_key else "") + "; refused before reading")
        try:
            data = f.read(info.st_size + 1)
        except OSError as e:
            raise DataError(f"{at}: cannot read the {what}: {e.strerror or e}") from None
    if len(data) != info.st_size:
        raise DataError(f"{at}: the {what} changed while it was read ({info.st_size} bytes, then {len(data)} or "
                        f"more); run the stage again once it is written")
    return data


def read_image(path: str | Path, *, max_pixels: int, channels: int, where: str = "") -> tuple[np.ndarray, str]:
    """Decode `path` into a uint8 array (H, W) for channels 1 or (H, W, 3) for 3, and the file's sha256.

    `where` (e.g. "manifest.csv line 4") is added to error messages so a user can find the
    row that named the file. Raises DataError for anything that cannot be used, and for any
    image whose padded square (`fit_square`) would exceed `max_pixels`.
    """
    path = Path(path)
    at = f"{path}" + (f" [{where}]" if where else "")
    data = read_input_file(path, max_bytes=max_file_bytes(max_pixels), at=at, what="image file",
                           limit_key=f"data.max_pixels = {max_pixels}: {BYTES_PER_PIXEL} bytes per pixel "
                                     f"+ {METADATA_BYTES >> 20} MiB")
    if not data:
        raise DataError(f"{at}: empty file (0 bytes); expected a PNG, JPEG, BMP or TIFF image")
    sha256 = hashlib.sha256(data).hexdigest()
    image = None
    with warnings.catch_warnings():
        # PIL warns above its MAX_IMAGE_PIXELS; data.max_pixels, checked next, is what decides.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size  # from the header: nothing decoded yet
            _check_size(width, height, max_pixels, at)
            frames = getattr(image, "n_frames", 1)
            if frames > 1:   # a multi-page TIFF (a cine loop, a stack): which page is the image is not ours to guess
                raise DataError(f"{at}: holds {frames} pages (frames); expected a single image: save the page to "
                                f"use as its own file")
            image.load()
            # a JPEG's orientation tag is part of how it is seen; in place: no copy of the pixels
            ImageOps.exif_transpose(image, in_place=True)
        except DataError:
            raise
        except Image.DecompressionBombError as e:
            raise DataError(f"{at}: refused as a decompression bomb ({e}); accepted: images up to "
                            f"data.max_pixels = {max_pixels} and PIL's limit of {2 * Image.MAX_IMAGE_PIXELS} "
                            f"pixels") from None
        except Image.UnidentifiedImageError:
            raise DataError(f"{at}: not a readable PNG, JPEG, BMP or TIFF image (unknown format or corrupt "
                            f"header)") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            kind = getattr(image, "format", None) or "image"
            raise DataError(f"{at}: corrupt or truncated {kind} data: {e}") from None
    try:
        return _to_uint8(image, channels, at), sha256
    except (ValueError, OSError) as e:   # a mode PIL cannot convert (e.g. LAB, HSV)
        raise DataError(f"{at}: pixel format {image.mode!r} cannot be converted ({e}); expected 8- or 16-bit "
                        f"grayscale, palette, RGB or RGBA") from None


def _check_size(width: int, height: int, max_pixels: int, at: str) -> None:
    """Refuse, from the header, an image whose padded square exceeds max_pixels or that is too small."""
    side = max(width, height)
    if side * side > max_pixels:
        padded = "" if width == height else f", padded to a {side}x{side} square = {side * side} pixels"
        raise DataError(f"{at}: the header says {width}x{height} = {width * height} pixels{padded}, more than "
                        f"data.max_pixels = {max_pixels}; refused before decoding (raise data.max_pixels "
                        f"if the image is genuine)")
    if min(width, height) < MIN_SIDE:
        raise DataError(f"{at}: image is {width}x{height} pixels; at least {MIN_SIDE} pixels on each "
                        f"side are needed")


def _to_uint8(image: Image.Image, channels: int, at: str) -> np.ndarray:
    """Bring any accepted PIL mode to uint8 luminance (H, W) or RGB (H, W, 3)."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # round(v * 255 / 65535) = round(v / 257) = (v + 128) // 257 exactly (v / 257 is never
        # a half), in place in 32-bit integers: 4 bytes a pixel, not 64-bit floats and copies
        values = np.array(image, dtype=np.int32)
        np.clip(values, 0, 65535, out=values)
        peak = int(values.max()) if values.size else 0
        if 0 < peak < LOW_DEPTH_PEAK:
            _warn_low_depth(at, peak)
        values += 128
        values //= 257
        gray = values.astype(np.uint8)
        del values
        return gray if channels == 1 else np.repeat(gray[..., None], 3, axis=2)
    if mode == "F" or mode.startswith("I;32") or mode.startswith("BGR"):
        raise DataError(f"{at}: pixel format {mode!r} is not accepted; expected 8- or 16-bit grayscale, "
                        f"palette, RGB or RGBA")
    if mode in ("L", "1"):
        gray = image if mode == "L" else image.convert("L")
        rgb = None
    else:
        if mode == "P":
            image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
            # composite over black: a transparent pixel is one without echo. Pasting through the
            # alpha band onto black gives alpha_composite's bytes without its two RGBA copies.
            rgba = image if image.mode == "RGBA" else image.convert("RGBA")
            rgb = Image.new("RGB", image.size, 0)
            rgb.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
            del rgba
        else:
            rgb = image.convert("RGB")
        gray = rgb.convert("L") if channels == 1 else None
    if channels == 1:
        return np.asarray(gray, dtype=np.uint8)
    if rgb is None:
        return np.repeat(np.asarray(gray, dtype=np.uint8)[..., None], 3, axis=2)
    return np.asarray(rgb, dtype=np.uint8)


LOW_DEPTH_PEAK = 1 << 12   # a 16-bit image whose values all stay below 4096 holds 12-bit (or shallower) data
LOW_DEPTH_SHOWN = 5        # images named one by one; the rest are counted once
_low_depth = {"count": 0}
_low_depth_lock = threading.Lock()


def _warn_low_depth(at: str, peak: int) -> None:
    """Say (on stderr) that a 16-bit image holds 12 bits or fewer: scaled by the 16-bit range it comes out dark."""
    with _low_depth_lock:
        _low_depth["count"] += 1
        n = _low_depth["count"]
    if n <= LOW_DEPTH_SHOWN:
        print(f"warning: {at}: a 16-bit image whose brightest value is {peak} (12 bits or fewer): scaled by the "
              f"16-bit range (v * 255 / 65535) it comes out nearly black (at most {round(peak * 255 / 65535)} of "
              f"255); if the data are 12-bit, save them scaled to 8 or 16 bits", file=sys.stderr)
    elif n == LOW_DEPTH_SHOWN + 1:
        print("warning: more 16-bit images hold 12 bits or fewer (not listed one by one)", file=sys.stderr)


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """Pad `image` (uint8 (H, W) or (H, W, 3)) to a square with black, then resample to size x size.

    Wide images are padded at the bottom, tall ones equally left and right (see the module
    docstring for why); shrinking averages areas (PIL BOX), enlarging is bilinear.
    """
    height, width = image.shape[:2]
    side = max(height, width)
    if height != width:
        left = (side - width) // 2
        padded = np.zeros((side, side) + image.shape[2:], dtype=np.uint8)
        padded[:height, left:left + width] = image
        image = padded
    if side == size:
        return np.ascontiguousarray(image)
    resample = Image.Resampling.BOX if side > size else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize((size, size), resample=resample), dtype=np.uint8)


def to_chw(image: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (S, S) or (S, S, 3) -> (channels, S, S); grayscale is replicated when 3 are asked for."""
    if image.ndim == 2:
        return np.repeat(image[None], channels, axis=0)
    if channels == 1:  # callers convert RGB to luminance before this; kept for safety
        return np.asarray(Image.fromarray(image).convert("L"))[None]
    return np.ascontiguousarray(image.transpose(2, 0, 1))
