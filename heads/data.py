"""A split in memory, as heads consume it: arrays read once from HDF5, batches cut from them.

Every array of a split is loaded into memory in one read per dataset (T15 train with 768-d
features is ~230 MB), so an epoch never touches the file again; batches are padded slices of
those arrays. Word ids, character ids and image label ids are built here from the cached
strings with vocabularies that come from the training split and travel with the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from featurize.cache.image_features import ImageFeatures
from featurize.cache.text_features import TextFeatures
from featurize.document_context import neighbour_texts
from featurize.errors import CacheError, ConfigError
from heads.inputs import EntryIndex, InputSpec, check_schema
from heads.label_maps import apply, resolve
from heads.vocab import Vocabularies

PAD = 0


@dataclass
class SplitData:
    """One split of a dataset: words, tags and every cached input a head may ask for."""

    name: str
    words: list[list[str]]
    tags: list[list[str]]
    example_ids: list[str]
    features: np.ndarray | None = None  # (n_words, D), concatenated over examples
    offsets: np.ndarray | None = None  # (n_examples + 1,)
    image: np.ndarray | None = None  # (n_examples, Dv) pooled vector, zeros where absent
    has_image: np.ndarray | None = None  # (n_examples,) bool
    patches: list[np.ndarray | None] | None = None  # per example (P, Dv) or None
    label_ids: np.ndarray | None = None  # (n_examples, 5) ImageNet class id + 1, 0 where absent
    entries: dict[str, str] = field(default_factory=dict)  # role -> cache key
    # The raw inputs behind the cached features, for fine-tuning the encoders end to end:
    contexts: list[str | None] | None = None  # per example, its second segment (--context)
    image_files: list[list[str]] | None = None  # per example, its decoded image files

    def __len__(self) -> int:
        return len(self.words)

    @property
    def text_dim(self) -> int:
        return 0 if self.features is None else int(self.features.shape[1])

    @property
    def image_dim(self) -> int:
        return 0 if self.image is None else int(self.image.shape[1])


def load_split(index: EntryIndex, spec: InputSpec, split: str, need_patches: bool = False) -> SplitData:
    """Read the text entries (several encoders are concatenated per word) and, when asked, the
    split's image entry, aligned with the text by example id. Several corpora
    (``--dataset a,b``) are read one by one and joined; a label map renames their types."""
    names = spec.datasets
    mapping = resolve(spec.label_map)
    if len(names) == 1 and mapping is None:
        return _load_one(index, spec, split, need_patches)
    parts = [
        _load_one(index, replace(spec, dataset=name, label_map=None), split, need_patches) for name in names
    ]
    if mapping is not None:
        for name, part in zip(names, parts):
            part.tags = apply(part.tags, mapping, f"{name}/{split}")
    return parts[0] if len(parts) == 1 else join_splits(parts, names)


def join_splits(parts: list[SplitData], names: list[str]) -> SplitData:
    """Several corpora's splits as one: examples in corpus order, ids ``<corpus>/<id>``, every
    cached input concatenated (image widths must agree: the same vision encoder)."""
    first = parts[0]
    n = [len(p) for p in parts]
    offsets = None
    if all(p.offsets is not None for p in parts):
        lengths = np.concatenate([np.diff(p.offsets) for p in parts])  # type: ignore[arg-type]
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
    features = (
        np.concatenate([p.features for p in parts], axis=0)  # type: ignore[misc]
        if all(p.features is not None for p in parts)
        else None
    )
    data = SplitData(
        first.name,
        [w for p in parts for w in p.words],
        [t for p in parts for t in p.tags],
        [f"{name}/{i}" for name, p in zip(names, parts) for i in p.example_ids],
        features,
        offsets,
    )

    def joined(attribute: str, empty: object) -> list | None:
        values = [getattr(p, attribute) for p in parts]
        if all(v is None for v in values):
            return None
        return [x for v, k in zip(values, n) for x in (v if v is not None else [empty] * k)]

    data.contexts = joined("contexts", None)
    data.image_files = joined("image_files", [])
    data.patches = joined("patches", None)
    for attribute in ("image", "has_image", "label_ids"):
        values = [getattr(p, attribute) for p in parts]
        if any(v is not None for v in values):
            widths = {v.shape[1:] for v in values if v is not None}
            if len(widths) > 1:
                raise CacheError(
                    f"the corpora's {attribute} arrays differ in width ({widths}): use one vision encoder"
                )
            (shape,) = widths
            dtype = next(v.dtype for v in values if v is not None)
            setattr(
                data,
                attribute,
                np.concatenate(
                    [v if v is not None else np.zeros((k, *shape), dtype=dtype) for v, k in zip(values, n)]
                ),
            )
    data.entries = dict(first.entries)
    for name, p in zip(names[1:], parts[1:]):
        data.entries |= {f"{role}@{name}": key for role, key in p.entries.items()}
    return data


def _load_one(index: EntryIndex, spec: InputSpec, split: str, need_patches: bool) -> SplitData:
    texts: list[TextFeatures] = []
    entries: dict[str, str] = {}
    for encoder in spec.text_encoders:
        info = index.text_entry(spec, encoder, split)
        check_schema(info.meta, info.path)
        texts.append(TextFeatures.load(info.path))
        entries[f"text:{encoder}"] = info.key
    if texts:
        first = texts[0]
        for other in texts[1:]:
            if other.example_ids != first.example_ids or other.words != first.words:
                raise CacheError(
                    f"{other.path} and {first.path} hold different examples: featurize both encoders "
                    "with the same reader options"
                )
        words, tags = _words_and_tags(first)
        features = (
            texts[0].features if len(texts) == 1 else np.concatenate([t.features for t in texts], axis=1)
        )
        data = SplitData(split, words, tags, list(first.example_ids), features, first.offsets.copy())
        if spec.context != "none" and first.contexts is not None:  # stored as featurize read it
            data.contexts = list(first.contexts)
        elif spec.context == "captions":
            data.contexts = list(first.captions)
        elif spec.context == "labels":
            data.contexts = _label_contexts(index, spec, split, first.example_ids)
        elif spec.context == "neighbours":  # rebuilt from ids and words, as featurize made them
            data.contexts = neighbour_texts(list(first.example_ids), words)
    else:
        data = _words_only(index, spec, split)
    if spec.knowledge_hints:
        with_hints(data)
    data.entries = entries | data.entries
    if spec.vision:
        _attach_images(index, spec, split, data, need_patches)
    return data


def with_hints(data: SplitData) -> SplitData:
    """``data`` with :mod:`heads.knowledge_hints`' columns after each word's features (in place),
    read from its second segments as featurize stored them."""
    from heads.knowledge_hints import HINT_DIM, hints_for

    if data.features is None:
        raise ConfigError("--knowledge-hints are appended to text features: name a text encoder (--text)")
    if data.contexts is None:
        raise CacheError(f"{data.name}: the cached text entry stores no context texts; featurize it again")
    parts = hints_for(data.words, data.contexts)
    hints = np.concatenate(parts) if parts else np.zeros((0, HINT_DIM), dtype=np.float32)
    data.features = np.concatenate([data.features, hints.astype(data.features.dtype)], axis=1)
    return data


def _label_contexts(
    index: EntryIndex, spec: InputSpec, split: str, example_ids: list[str]
) -> list[str | None]:
    """The label words featurize put after each example (``--context labels``), from the split's
    ``labels`` image entry, formatted as featurize formats them."""
    from featurize.pipeline import _label_words

    info = index.image_entry(InputSpec(spec.dataset, vision="labels"), split)
    if info is None:
        return [None] * len(example_ids)
    labels = ImageFeatures.load(info.path)
    position = {eid: i for i, eid in enumerate(labels.example_ids)}
    return [
        (_label_words(labels.label_words(position[eid])) or None) if eid in position else None
        for eid in example_ids
    ]


def _words_and_tags(text: TextFeatures) -> tuple[list[list[str]], list[list[str]]]:
    examples = [text.example(i) for i in range(len(text))]
    return [list(e[0]) for e in examples], [e[1] for e in examples]


def _words_only(index: EntryIndex, spec: InputSpec, split: str) -> SplitData:
    """Heads with their own embeddings still read words and tags from a text entry: any one."""
    found = [
        e
        for e in index.entries
        if e.meta.get("kind") == "text"
        and e.meta.get("dataset") == spec.dataset
        and e.meta.get("split") == split
    ]
    if not found:
        index.check_damaged("text", spec.dataset, split)
        raise CacheError(
            f"no cached text of {spec.dataset}/{split}: run `featurize {spec.dataset}` first (cache: {index.root})"
        )
    info = sorted(found, key=lambda e: str(e.meta.get("created")))[0]
    check_schema(info.meta, info.path)
    text = TextFeatures.load(info.path)
    words, tags = _words_and_tags(text)
    return SplitData(split, words, tags, list(text.example_ids), entries={"words": info.key})


def _attach_images(
    index: EntryIndex, spec: InputSpec, split: str, data: SplitData, need_patches: bool
) -> None:
    n = len(data)
    info = index.image_entry(spec, split)
    data.has_image = np.zeros(n, dtype=bool)
    data.label_ids = np.zeros((n, 5), dtype=np.int64)
    if info is None:
        if not index.any_image_entry(spec):
            raise CacheError(
                f"no cached {spec.vision} image features for {spec.dataset}: run "
                f"`featurize {spec.dataset} --vision {spec.vision} --images DIR` first (cache: {index.root})"
            )
        data.image = None  # this split had no image at all; the dimension comes from another split
        return
    check_schema(info.meta, info.path)
    images = ImageFeatures.load(info.path)
    data.entries[f"vision:{spec.vision}"] = info.key
    position = {eid: i for i, eid in enumerate(images.example_ids)}
    data.image_files = [
        [images.files[k] for k in images.images_of(position[eid])] if eid in position else []
        for eid in data.example_ids
    ]
    if "pooled" in images.arrays:
        data.image = np.zeros((n, images.arrays["pooled"].shape[1]), dtype=np.float32)
    if need_patches:
        if "patches" not in images.arrays:
            raise CacheError(
                f"{info.path} holds no patch grid: run featurize with --vision {spec.vision} --patches"
            )
        data.patches = [None] * n
    for i, eid in enumerate(data.example_ids):
        j = position.get(eid)
        if j is None:
            continue
        if data.image is not None:
            vector = images.example_vector(j)
            if vector is not None:
                data.image[i] = vector
                data.has_image[i] = True
        if "top5_ids" in images.arrays:
            for image in images.images_of(j):
                ids = images.rows("top5_ids", image)
                if len(ids):
                    data.label_ids[i] = ids[0][:5] + 1
                    data.has_image[i] = True
                    break
        if need_patches and data.patches is not None:
            grids = [images.rows("patches", k) for k in images.images_of(j)]
            grids = [g for g in grids if len(g)]
            if grids:
                data.patches[i] = grids[0]


def fill_missing_image_dims(splits: list[SplitData], width: int | None = None) -> None:
    """A split without any image found still needs zero vectors of the model's width."""
    dims = {s.image_dim for s in splits if s.image is not None}
    if len(dims) > 1:
        raise CacheError(f"image features differ in width across splits: {sorted(dims)}")
    width = width or (dims.pop() if dims else None)
    for s in splits:
        if s.has_image is not None and s.image is None and width:
            s.image = np.zeros((len(s), width), dtype=np.float32)


@dataclass
class Batch:
    index: list[int]
    mask: Tensor  # (B, T) bool
    tags: Tensor  # (B, T) long, 0 where padded
    text: Tensor | None = None  # (B, T, D)
    word_ids: Tensor | None = None  # (B, T)
    char_ids: Tensor | None = None  # (B, T, C)
    image: Tensor | None = None  # (B, Dv)
    has_image: Tensor | None = None  # (B,) bool
    patches: Tensor | None = None  # (B, P, Dv), zeros where absent
    label_ids: Tensor | None = None  # (B, 5)

    @property
    def lengths(self) -> Tensor:
        return self.mask.sum(1)


class Batcher:
    """Cuts padded batches out of a SplitData; what it includes is what the head needs."""

    def __init__(
        self,
        data: SplitData,
        tag_names: list[str],
        vocab: Vocabularies | None = None,
        needs: frozenset[str] = frozenset({"text"}),
        foreign_tags: bool = False,
    ) -> None:
        """``foreign_tags``: gold tags the model does not know are allowed (read as O in the
        batches); for scoring a model on another corpus, where the metrics read the gold tags'
        strings and a type the model cannot predict simply has no recall."""
        self.data = data
        self.needs = needs
        code = {t: i for i, t in enumerate(tag_names)}
        unknown = sorted({t for seq in data.tags for t in seq} - set(code))
        if unknown and foreign_tags:
            code |= dict.fromkeys(unknown, code.get("O", 0))
        elif unknown:
            raise ConfigError(
                f"{data.name} has tags the model does not know: {', '.join(unknown)} (labels: {', '.join(tag_names)})"
            )
        self.tags = [np.array([code[t] for t in seq], dtype=np.int64) for seq in data.tags]
        self.word_ids = [vocab.word_ids(seq) for seq in data.words] if vocab and "word_ids" in needs else None
        self.char_ids = [vocab.char_ids(seq) for seq in data.words] if vocab and "char_ids" in needs else None
        if "text" in needs and data.features is None:
            raise ConfigError("this head needs cached text features (--text)")
        if ("image" in needs or "patches" in needs) and data.image is None:
            raise ConfigError("this head needs image features (--vision)")
        if "label_ids" in needs and data.label_ids is None:
            raise ConfigError("this head needs image label words (--vision labels)")

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Shuffled batches when a generator is given (training), else in length order (fast
        evaluation, fewer padded steps); ``Batch.index`` says which examples a batch holds."""
        n = len(self.data)
        if generator is None:
            order = sorted(range(n), key=lambda i: len(self.tags[i]))
            for start in range(0, n, batch_size):
                yield self.collate(order[start : start + batch_size])
            return
        # Bucketing: shuffle, sort each pool of 50 batches by length, cut it into batches and
        # shuffle the batches. Batches stay random but hold tweets of similar length, so far less
        # of every step is padding (the CRF and character CNN pay for every padded position).
        order = torch.randperm(n, generator=generator).tolist()
        pool = batch_size * 50
        batches = []
        for start in range(0, n, pool):
            chunk = sorted(order[start : start + pool], key=lambda i: len(self.tags[i]))
            batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
        for k in torch.randperm(len(batches), generator=generator).tolist():
            yield self.collate(batches[k])

    def collate(self, index: list[int]) -> Batch:
        lengths = [len(self.tags[i]) for i in index]
        b, t = len(index), max(lengths)
        mask = torch.zeros(b, t, dtype=torch.bool)
        tags = torch.zeros(b, t, dtype=torch.long)
        for r, i in enumerate(index):
            mask[r, : lengths[r]] = True
            tags[r, : lengths[r]] = torch.from_numpy(self.tags[i])
        batch = Batch(index=index, mask=mask, tags=tags)
        d = self.data
        if "text" in self.needs and d.features is not None and d.offsets is not None:
            text = torch.zeros(b, t, d.features.shape[1])
            for r, i in enumerate(index):
                text[r, : lengths[r]] = torch.from_numpy(d.features[d.offsets[i] : d.offsets[i + 1]])
            batch.text = text
        if self.word_ids is not None:
            ids = torch.full((b, t), PAD, dtype=torch.long)
            for r, i in enumerate(index):
                ids[r, : lengths[r]] = torch.from_numpy(self.word_ids[i])
            batch.word_ids = ids
        if self.char_ids is not None:
            width = max(self.char_ids[i].shape[1] for i in index)
            chars = torch.full((b, t, width), PAD, dtype=torch.long)
            for r, i in enumerate(index):
                c = self.char_ids[i]
                chars[r, : c.shape[0], : c.shape[1]] = torch.from_numpy(c)
            batch.char_ids = chars
        if (
            ("image" in self.needs or "patches" in self.needs)
            and d.image is not None
            and d.has_image is not None
        ):
            batch.image = torch.from_numpy(d.image[index])
            batch.has_image = torch.from_numpy(d.has_image[index])
        if "patches" in self.needs:
            grids = [d.patches[i] if d.patches is not None else None for i in index]
            shape = next((g.shape for g in grids if g is not None), None)
            if shape is None:  # no image in this batch: one zero patch, masked by has_image
                width = d.image.shape[1] if d.image is not None else 1
                batch.patches = torch.zeros(b, 1, width)
            else:
                patches = torch.zeros(b, *shape)
                for r, g in enumerate(grids):
                    if g is not None:
                        patches[r] = torch.from_numpy(g)
                batch.patches = patches
        if "label_ids" in self.needs and d.label_ids is not None:
            batch.label_ids = torch.from_numpy(d.label_ids[index])
        return batch
