"""Image captions (BLIP-2 files ``<imgid>.jpg :<caption>``) joined to examples by image id."""

from __future__ import annotations

from pathlib import Path

from featurize.errors import DataFormatError
from featurize.example import Split
from featurize.readers.text_file import read_lines


def read_captions(path: Path) -> dict[str, str]:
    """Image id (file name without suffix) -> caption."""
    captions = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        name, sep, caption = line.partition(" :")
        if not sep:
            raise DataFormatError(path, number, "expected '<image file> :<caption>'")
        captions[Path(name.strip()).stem] = caption.strip()
    return captions


def join_captions(split: Split, captions: dict[str, str]) -> None:
    """Attach the caption of each example's first image that has one."""
    for example in split.examples:
        example.caption = None
        for image_id in example.image_ids:
            caption = captions.get(Path(image_id).stem)
            if caption is not None:
                example.caption = caption
                split.captions_found += 1
                break
