"""CoNLL-style column files: ``token<whitespace>...<label>``, blank line between examples.

``umt`` is the Twitter-2015/2017 variant of the UMT repository: each tweet opens with an
``IMGID:<id>`` line and columns are tab-separated.
"""

from __future__ import annotations

from pathlib import Path

from featurize.errors import DataFormatError
from featurize.example import Example
from featurize.labels import check_tag
from featurize.limits import MAX_EXAMPLE_WORDS, check_token, check_words, shown
from featurize.readers import READERS
from featurize.readers.text_file import read_lines


def _read(path: Path, types: set[str] | None, require_imgid: bool) -> list[Example]:
    examples: list[Example] = []
    words: list[str] = []
    labels: list[str] = []
    image_ids: list[str] = []
    start = 0

    def close() -> None:
        nonlocal words, labels, image_ids, start
        if words and require_imgid and not image_ids:
            raise DataFormatError(path, start, "tweet has no IMGID:<id> line before its tokens")
        if words:
            examples.append(
                Example(
                    id=f"{path.stem}:{start}",
                    words=words,
                    labels=labels,
                    image_ids=image_ids,
                    source=str(path),
                    line=start,
                )
            )
        elif image_ids:
            raise DataFormatError(path, start, f"IMGID:{image_ids[0]} has no tokens after it")
        words, labels, image_ids, start = [], [], [], 0

    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            close()
            continue
        if line.startswith("-DOCSTART-"):
            continue
        if line.startswith("IMGID:"):
            if words:
                close()
            image_id = line[len("IMGID:") :].strip()
            if not image_id:
                raise DataFormatError(path, number, "IMGID: line without an id")
            image_ids = [image_id]
            start = start or number
            continue
        columns = line.split("\t") if "\t" in line else line.split()
        if len(columns) < 2 or not columns[-1].strip():
            raise DataFormatError(path, number, f"token {shown(columns[0])} has no label")
        token, tag = columns[0], columns[-1].strip()
        check_token(token, path, number)
        check_tag(tag, str(path), number, types)
        if not words:
            start = start or number
        if len(words) >= MAX_EXAMPLE_WORDS:
            check_words(len(words) + 1, path, number, start)
        words.append(token)
        labels.append(tag)
    close()
    return examples


@READERS.register("conll")
def read_conll(path: Path, types: set[str] | None = None) -> list[Example]:
    return _read(path, types, require_imgid=False)


@READERS.register("umt")
def read_umt(path: Path, types: set[str] | None = None) -> list[Example]:
    return _read(path, types, require_imgid=True)
