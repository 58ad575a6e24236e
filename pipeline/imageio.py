"""Decoding and resizing of ultrasound images, shared by every data source.

Decoding (`read_image`): PNG, JPEG, BMP and TIFF only (other decoders are not even tried).
The size in the header is checked against `data.max_pixels` before any pixel is decoded, and
PIL's own decompression-bomb guard is turned into an error. Images smaller than `MIN_SIDE`
pixels on a side are refused: they carry no anatomy. Pixel formats are brought to 8 bits:

- 8-bit grayscale ("L") is used as is; 1-bit ("1") becomes 0/255.
- 16-bit grayscale ("I;16", "I;16B", ...) is scaled by its dtype range, v * 255 / 65535,
  rounded (not by the image's own min/max, which would change the brightness, the echo
  intensity clinicians read, from image to image). 32-bit integer images ("I", as some TIFFs
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
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pipeline.errors import DataError

FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
MIN_SIDE = 8  # pixels; smaller images carry no anatomy (and would be mostly padding)


def read_image(path: str | Path, *, max_pixels: int, channels: int, where: str = "") -> tuple[np.ndarray, str]:
    """Decode `path` into a uint8 array (H, W) for channels 1 or (H, W, 3) for 3, and the file's sha256.

    `where` (e.g. "manifest.csv line 4") is added to error messages so a user can find the
    row that named the file. Raises DataError for anything that cannot be used.
    """
    path = Path(path)
    at = f"{path}" + (f" [{where}]" if where else "")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{at}: image file not found") from None
    except OSError as e:
        raise DataError(f"{at}: cannot read the image file: {e.strerror or e}") from None
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
            if width * height > max_pixels:
                raise DataError(f"{at}: the header says {width}x{height} = {width * height} pixels, more than "
                                f"data.max_pixels = {max_pixels}; refused before decoding (raise data.max_pixels "
                                f"if the image is genuine)")
            if min(width, height) < MIN_SIDE:
                raise DataError(f"{at}: image is {width}x{height} pixels; at least {MIN_SIDE} pixels on each "
                                f"side are needed")
            image.load()
            image = ImageOps.exif_transpose(image)  # a JPEG's orientation tag is part of how it is seen
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


def _to_uint8(image: Image.Image, channels: int, at: str) -> np.ndarray:
    """Bring any accepted PIL mode to uint8 luminance (H, W) or RGB (H, W, 3)."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.int64)
        gray = np.round(np.clip(values, 0, 65535) * (255 / 65535)).astype(np.uint8)
        return gray if channels == 1 else np.repeat(gray[..., None], 3, axis=2)
    if mode == "F" or mode.startswith("I;32") or mode.startswith("BGR"):
        raise DataError(f"{at}: pixel format {mode!r} is not accepted; expected 8- or 16-bit grayscale, "
                        f"palette, RGB or RGBA")
    if mode in ("L", "1"):
        gray = image.convert("L")
        rgb = None
    else:
        if mode == "P":
            image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
            # composite over black: a transparent pixel is one without echo
            black = Image.new("RGBA", image.size, (0, 0, 0, 255))
            image = Image.alpha_composite(black, image.convert("RGBA"))
        rgb = image.convert("RGB")
        gray = rgb.convert("L") if channels == 1 else None
    if channels == 1:
        return np.asarray(gray, dtype=np.uint8)
    if rgb is None:
        return np.repeat(np.asarray(gray, dtype=np.uint8)[..., None], 3, axis=2)
    return np.asarray(rgb, dtype=np.uint8)


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
