"""Reading a data file as text lines with errors that point at the offending line."""

from __future__ import annotations

from pathlib import Path

from featurize.errors import DataFormatError
from featurize.limits import MAX_LINE_BYTES

BOM = b"\xef\xbb\xbf"


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 file without line ends; rejects missing, empty and non-UTF-8 files and
    lines over :data:`featurize.limits.MAX_LINE_BYTES`."""
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataFormatError(path, None, f"cannot read the file: {err.strerror or err}") from None
    if data.startswith(BOM):
        data = data[len(BOM) :]
    if not data.strip():
        raise DataFormatError(path, None, "file is empty")
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if len(raw) > MAX_LINE_BYTES:
            raise DataFormatError(
                path,
                number,
                f"line of {len(raw):,} bytes, over the limit of {MAX_LINE_BYTES:,} (a lost line end?)",
            )
        try:
            lines.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as err:
            raise DataFormatError(
                path,
                number,
                f"not valid UTF-8: byte 0x{raw[err.start]:02x} at column {err.start + 1}",
            ) from None
    if lines and lines[-1] == "":
        lines.pop()
    return lines
