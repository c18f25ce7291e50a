"""HIPE-2022 TSV: ``#`` comment lines, a header row, column NE-COARSE-LIT holds the BIO tags.

Sentences end where the MISC column says ``EndOfSentence`` and at every document boundary,
so no sentence spans two documents.
"""

from __future__ import annotations

from pathlib import Path

from featurize.errors import DataFormatError
from featurize.example import Example
from featurize.labels import check_tag
from featurize.limits import MAX_EXAMPLE_WORDS, check_token, check_words, shown
from featurize.readers import READERS
from featurize.readers.text_file import read_lines

LABEL_COLUMN = "NE-COARSE-LIT"


@READERS.register("hipe")
def read_hipe(path: Path, types: set[str] | None = None) -> list[Example]:
    examples: list[Example] = []
    columns: dict[str, int] | None = None
    document = path.stem
    sentence = 0
    words: list[str] = []
    labels: list[str] = []
    start = 0

    def close() -> None:
        nonlocal words, labels, sentence
        if words:
            examples.append(
                Example(
                    id=f"{document}:{sentence}",
                    words=words,
                    labels=labels,
                    source=str(path),
                    line=start,
                )
            )
            sentence += 1
        words, labels = [], []

    for number, line in enumerate(read_lines(path), start=1):
        if line.startswith("#"):
            if "document_id" in line and "=" in line:
                close()
                document = line.split("=", 1)[1].strip()
                sentence = 0
            continue
        if not line.strip():
            close()
            continue
        cells = line.split("\t")
        if columns is None:
            if cells[0] != "TOKEN" or LABEL_COLUMN not in cells or "MISC" not in cells:
                raise DataFormatError(
                    path, number, f"expected a header row with TOKEN, {LABEL_COLUMN} and MISC"
                )
            twice = sorted({name for name in cells if cells.count(name) > 1})
            if twice:
                raise DataFormatError(path, number, f"header names {', '.join(map(shown, twice))} twice")
            columns = {name: i for i, name in enumerate(cells)}
            continue
        if cells[0] == "TOKEN":
            continue  # header repeated by concatenated files
        if len(cells) != len(columns):
            raise DataFormatError(path, number, f"{len(cells)} columns, the header has {len(columns)}")
        tag = cells[columns[LABEL_COLUMN]].strip()
        if not tag or tag == "_":
            raise DataFormatError(path, number, f"token {shown(cells[0])} has no {LABEL_COLUMN} label")
        check_token(cells[0], path, number)
        check_tag(tag, str(path), number, types)
        if not words:
            start = number
        if len(words) >= MAX_EXAMPLE_WORDS:
            check_words(len(words) + 1, path, number, start)
        words.append(cells[0])
        labels.append(tag)
        if "EndOfSentence" in cells[columns["MISC"]].split("|"):
            close()
    close()
    return examples
