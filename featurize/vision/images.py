"""Reading image files into the one form every encoder takes: an upright RGB ``PIL.Image``.

Tweet photos come as JPEGs with EXIF rotation, PNGs with alpha, palettes and the odd CMYK
JPEG; historical scans as grayscale or 16-bit PNGs. All of that is settled here, once, so an
encoder never sees anything but upright RGB. A broken file fails here, naming the file, and
never in the middle of a batch later (PIL decodes lazily, so ``load()`` is forced).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from featurize.errors import MnerError

# Truncated files must fail, not be padded with grey: PIL's default, stated here on purpose.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(MnerError):
    """An image file that cannot be decoded; names the file so the user can look at it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot read image ({reason})")


def load_image(path: str | Path) -> Image.Image:
    """The file at ``path`` as a fully decoded, upright RGB image."""
    try:
        with Image.open(path) as img:
            img.load()
            upright = ImageOps.exif_transpose(img) or img
            rgb = to_rgb(upright)
            rgb.load()
    except MnerError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        # PIL reports bad data as OSError ("truncated", "cannot identify"), SyntaxError (bad
        # PNG chunks) or ValueError; all mean the same to the user.
        raise ImageError(path, f"{type(err).__name__}: {err}") from None
    return rgb


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB from any PIL mode: transparency onto white, wide grayscale scaled to 8 bits."""
    if img.mode == "RGB":
        return img.copy()
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        img = _wide_gray_to_l(img)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode == "L" and "transparency" in img.info:
        return to_rgb(img.convert("LA"))
    return img.convert("RGB")


def _wide_gray_to_l(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grayscale (scans) to 8 bits by their nominal range.

    ``convert("L")`` clips 16-bit values at 255, which turns most scans white; dividing by the
    type's full range keeps the picture as it was scanned.
    """
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        top = 1.0 if values.size and float(values.max()) <= 1.0 else 255.0
    elif img.mode.startswith("I;16"):
        top = 65535.0
    else:  # "I": 32-bit ints, in practice 16-bit data (PIL opens 16-bit PNGs as "I")
        top = 65535.0 if values.size and float(values.max()) > 255 else 255.0
    scaled = np.clip(np.rint(values / top * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled)
