"""Reading a data file as text lines with errors that point at the offending line."""

from __future__ import annotations

from pathlib import Path

from featurize.errors import DataFormatError


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 file without line ends; rejects missing, empty and non-UTF-8 files."""
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    data = path.read_bytes()
    if not data.strip():
        raise DataFormatError(path, None, "file is empty")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
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
