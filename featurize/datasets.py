"""Named datasets and the one loader that reads any of them, or any file, into splits.

A named dataset is a :class:`DatasetSpec` registered under its name: which files under the
data root hold which split, their format, the entity types they may use and the label
renaming applied by default. Anything else is a path plus ``--format``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from featurize.captions import join_captions, read_captions
from featurize.errors import ConfigError, DataFormatError
from featurize.example import Example, Split
from featurize.hashing import sha256_file
from featurize.images import ImageIndex, MissingImages, resolve_images
from featurize.labels import entity_types, rename_types, repair_i_starts, span_starts_with_i
from featurize.readers import READERS
from featurize.registry import Registry

DATA_DIR_ENV = "MNER_DATA_DIR"
DEFAULT_DATASET = "t17"  # what commands that take one dataset read when none is named
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    format: str
    files: dict[str, str]
    source: str
    types: frozenset[str] | None = None
    label_map: dict[str, str] = field(default_factory=dict)
    captions: str | None = None
    images: str | None = None  # default image folder under the data root, used when present
    # For corpora shipped as one file: contiguous fractions for train/dev/test, in file order,
    # so neighbouring sentences of one document never land in two splits.
    split_fractions: tuple[float, float, float] | None = None
    # How raw text is cut into this dataset's words when a head trained on it tags new text
    # (heads.words.tokenize): "tweet" keeps "#tag"/"@user" whole, "split" splits the sign off.
    tokenizer: str = "tweet"
    # LLM knowledge per example under the data root (``--context knowledge``; featurize.knowledge)
    knowledge: str | None = None


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _add(spec: DatasetSpec) -> None:
    DATASETS.register(spec.name)(spec)


_UMT = "github.com/jefferyYu/UMT (data/)"
_add(
    DatasetSpec(
        "t15",
        "umt",
        {s: f"twitter2015/{f}.txt" for s, f in zip(SPLITS, ("train", "valid", "test"))},
        f"Twitter-2015 (Zhang et al., AAAI 2018), UMT split: {_UMT}",
        frozenset({"PER", "LOC", "ORG", "OTHER"}),
        {"OTHER": "MISC"},
        "captions/blip2_twitter2015.txt",
        "twitter2015_images",
        knowledge="knowledge/pgim_twitter2015.tsv",  # PGIM's ChatGPT knowledge (Li et al. 2023)
    )
)
_add(
    DatasetSpec(
        "t17",
        "umt",
        {s: f"twitter2017/{f}.txt" for s, f in zip(SPLITS, ("train", "valid", "test"))},
        f"Twitter-2017 (Lu et al., ACL 2018), UMT split: {_UMT}",
        frozenset({"PER", "LOC", "ORG", "MISC"}),
        {},
        "captions/blip2_twitter2017.txt",
        "twitter2017_images",
        tokenizer="split",  # UMT's Twitter-2017 has "#" and "@" split off ("# NBA", "@ user")
        knowledge="knowledge/pgim_twitter2017.tsv",
    )
)
_add(
    DatasetSpec(
        "hipe-de",
        "hipe",
        {s: f"hipe2020_de/HIPE-2022-v2.1-hipe2020-{s}-de.tsv" for s in SPLITS},
        "HIPE-2022 v2.1, hipe2020 German: github.com/hipe-eval/HIPE-2022-data (data/v2.1/hipe2020/de/)",
        frozenset({"pers", "loc", "org", "prod", "time"}),
    )
)
for _lang in ("de", "cs"):
    _add(
        DatasetSpec(
            f"ehri-{_lang}",
            "conll",
            {"all": f"ehri_ner/ehri_{_lang}.txt"},
            f"EHRI-NER: github.com/EHRI/EHRI-NER (dataset/iob/{_lang}/)",
            frozenset({"PERS", "LOC", "ORG", "DATE", "CAMP", "GHETTO"}),
            split_fractions=(0.8, 0.1, 0.1),
        )
    )


@dataclass(frozen=True)
class LoadOptions:
    """Everything besides the input bytes that changes what a loader returns."""

    data_dir: Path | None = None
    format: str | None = None
    label_map: dict[str, str] | None = None  # None: the dataset's default
    repair_iob: bool = False
    images: Path | None = None  # None: the dataset's default image folder, when present
    image_map: Path | None = None
    missing_images: MissingImages = MissingImages.keep
    captions: Path | None = None  # None: the dataset's own captions file, when it has one
    use_captions: bool = True
    split_fractions: tuple[float, float, float] | None = None  # cut one user file into train/dev/test
    # The entity types a user file declares (--types): a tag of any other type is refused.
    # None: not declared (a named dataset declares its own, DatasetSpec.types).
    types: frozenset[str] | None = None

    def describe(self, spec: DatasetSpec) -> dict[str, object]:
        described: dict[str, object] = {
            "format": spec.format,
            "label_map": self.effective_label_map(spec),
            "repair_iob": self.repair_iob,
            "images": str(self.images) if self.images else None,
            "image_map": str(self.image_map) if self.image_map else None,
            "missing_images": self.missing_images.value,
            "captions": self.use_captions,
            "split_fractions": spec.split_fractions,
        }
        if self.types is not None:  # only when given, so the keys of runs without it stay the same
            described["types"] = sorted(self.types)
        return described

    def effective_label_map(self, spec: DatasetSpec) -> dict[str, str]:
        return dict(spec.label_map if self.label_map is None else self.label_map)


@dataclass
class Dataset:
    name: str
    spec: DatasetSpec
    splits: dict[str, Split]
    fingerprints: dict[str, str]
    options: dict[str, object]
    image_root: Path | None = None  # where image ids were resolved; None: not resolved
    # The entity types every tag was checked against (the dataset's own or --types); None: any.
    types_declared: frozenset[str] | None = None
    # The entity types the files use, as written (before --label-map), over the loaded splits.
    types_found: list[str] = field(default_factory=list)


def data_dir(option: Path | None) -> Path:
    if option is not None:
        return option
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``0.8,0.1,0.1`` -> train, dev, test shares (summing to 1)."""
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p <= 0 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise ConfigError(f"--split-fractions {text!r}: three positive shares summing to 1, e.g. 0.8,0.1,0.1")
    return parts  # type: ignore[return-value]


def spec_for(name_or_path: str, fmt: str | None) -> tuple[DatasetSpec, Path | None]:
    """A named dataset's spec, or one built for a user file or folder of split files."""
    if name_or_path in DATASETS and fmt is None:
        return DATASETS.get(name_or_path), None
    path = Path(name_or_path)
    if not path.exists():
        known = ", ".join(DATASETS)
        raise ConfigError(f"{name_or_path!r} is neither a known dataset ({known}) nor a path")
    if fmt is None:
        raise ConfigError(f"{path} is a path: say its format with --format ({', '.join(READERS)})")
    READERS.get(fmt)
    if path.is_dir():
        files = {}
        for file in sorted(path.iterdir()):
            split = {"valid": "dev", "validation": "dev"}.get(file.stem, file.stem)
            if file.is_file() and split in SPLITS:
                files[split] = str(file.resolve())
        if not files:
            raise ConfigError(f"{path} holds no train/dev/valid/test files")
    else:
        files = {path.stem: str(path.resolve())}
    return DatasetSpec(path.name, fmt, files, f"user data at {path}"), path


def _split_contiguous(examples: list[Example], fractions: tuple[float, ...]) -> dict[str, list[Example]]:
    n = len(examples)
    ends = [round(n * sum(fractions[: i + 1])) for i in range(len(fractions))]
    ends[-1] = n
    out, begin = {}, 0
    for split, end in zip(SPLITS, ends):
        out[split] = examples[begin:end]
        begin = end
    return out


def _content_hash(examples: list[Example]) -> str:
    digest = hashlib.sha256()
    for ex in examples:
        record = [ex.id, ex.words, ex.labels, ex.image_ids, ex.image_paths, ex.caption]
        digest.update(json.dumps(record, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def load_dataset(
    name_or_path: str, options: LoadOptions | None = None, splits: list[str] | None = None
) -> Dataset:
    options = options or LoadOptions()
    spec, user_path = spec_for(name_or_path, options.format)
    if options.split_fractions is not None:
        if user_path is None or not user_path.is_file():
            raise ConfigError(
                "--split-fractions cuts one user file into splits; give a file, not a named dataset or folder"
            )
        spec = replace(spec, split_fractions=options.split_fractions)
    if options.types is not None:
        if user_path is None:
            raise ConfigError(
                f"--types declares the entity types of a user file; dataset {spec.name} declares its "
                f"own: {', '.join(sorted(spec.types or ()))}"
            )
        spec = replace(spec, types=frozenset(options.types))
    root = data_dir(options.data_dir)
    reader = READERS.get(spec.format)
    types = set(spec.types) if spec.types is not None else None

    raw: dict[str, tuple[list[Example], list[Path]]] = {}
    for split, relative in spec.files.items():
        if splits and spec.split_fractions is None and split not in splits:
            continue
        path = Path(relative) if user_path is not None else root / relative
        if not path.is_file():
            raise ConfigError(
                f"dataset {spec.name}: {path} not found. Point --data-dir or {DATA_DIR_ENV} at the "
                f"folder that holds {relative}; get it from {spec.source}"
            )
        examples = reader(path, types)
        if spec.split_fractions is not None:
            for part, items in _split_contiguous(examples, spec.split_fractions).items():
                raw[part] = (items, [path])
        else:
            raw[split] = (examples, [path])

    available = list(spec.files) if spec.split_fractions is None else list(SPLITS)
    wanted = splits or available
    for split in wanted:
        if split not in available:
            raise ConfigError(f"dataset {spec.name} has no split {split!r}; it has {available}")

    caption_map: dict[str, str] | None = None
    if options.use_captions:
        caption_file = options.captions or (root / spec.captions if spec.captions else None)
        if caption_file is not None and caption_file.is_file():
            caption_map = read_captions(caption_file)
    image_root = options.images
    if image_root is None and spec.images and (root / spec.images).is_dir():
        image_root = root / spec.images
    index = ImageIndex(image_root, options.image_map) if image_root else None
    mapping = options.effective_label_map(spec)

    found = sorted({kind for split in wanted for ex in raw[split][0] for kind in entity_types(ex.labels)})
    result: dict[str, Split] = {}
    fingerprints: dict[str, str] = {}
    for split in wanted:
        examples, paths = raw[split]
        loaded = Split(split, examples, [str(p) for p in paths])
        for example in examples:
            example.labels = rename_types(example.labels, mapping)
            if options.repair_iob:
                loaded.repaired += repair_i_starts(example)
            else:
                loaded.i_starts += len(span_starts_with_i(example.labels))
        if index is not None:
            resolve_images(loaded, index, options.missing_images)
        if caption_map is not None:
            join_captions(loaded, caption_map)
        if not loaded.examples:
            why = " after dropping examples with missing images" if loaded.dropped_missing_image else ""
            raise DataFormatError(paths[0], None, f"split {split!r} has no examples{why}")
        result[split] = loaded
        fingerprints[split] = hashlib.sha256(
            json.dumps(
                {
                    "files": {str(p.name): sha256_file(p) for p in paths},
                    "options": options.describe(spec),
                    "split": split,
                    "content": _content_hash(loaded.examples),
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()
    return Dataset(
        spec.name,
        spec,
        result,
        fingerprints,
        options.describe(spec),
        image_root,
        frozenset(types) if types is not None else None,
        found,
    )
