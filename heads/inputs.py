"""Which cache entries a head reads, found by what they hold rather than by file name.

A head names its inputs the way a user does (``--text mpnet --vision vit --context captions``);
this module finds the matching published entries of each split by their metadata, so heads
never recompute a key, never load a dataset file and never load an encoder. Several text
encoders joined with ``+`` (``minilm+mpnet``) are read side by side and concatenated per word.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from featurize.cache.schema import SCHEMA_VERSION, read_attrs
from featurize.cache.store import FeatureStore, open_entry
from featurize.contexts import CONTEXT_KINDS, canonical, context_parts, default_budget
from featurize.errors import CacheError, ConfigError, IntegrityError
from featurize.text import DEFAULT_TEXT_ENCODER
from featurize.text.transformer import layers_label

CONTEXTS = ("none", *CONTEXT_KINDS)  # and kinds joined with + (captions+knowledge)


@dataclass(frozen=True)
class InputSpec:
    """What a head reads. ``text`` may be None for heads that learn their own word embeddings;
    ``pooling``/``layers`` pick among entries of one encoder featurized several ways.
    ``dataset`` may name several corpora, comma-separated (each featurized on its own), read
    as one; ``label_map`` maps their types onto one scheme (heads.label_maps).
    ``context_budget`` picks among entries of one context featurized with several budgets
    (None: the one featurize makes by default, or the only one there is).
    ``knowledge_hints`` appends :mod:`heads.knowledge_hints`' columns to each word's features,
    read from the knowledge part of the context."""

    dataset: str
    text: str | None = DEFAULT_TEXT_ENCODER
    vision: str | None = None
    context: str = "none"
    pooling: str | None = None
    layers: str | None = None
    label_map: str | None = None
    context_budget: int | None = None
    knowledge_hints: bool = False

    def __post_init__(self) -> None:
        from heads.label_maps import resolve

        if not self.datasets:
            raise ConfigError("--dataset: name a dataset (several: comma-separated)")
        resolve(self.label_map)  # a malformed map fails here, before anything is read
        object.__setattr__(self, "context", canonical(self.context or "none"))
        if self.context_budget is not None and self.context == "none":
            raise ConfigError("--context-budget needs a --context")
        if self.context != "none" and not self.text:
            raise ConfigError("--context needs a text encoder (--text)")
        if self.knowledge_hints and (
            self.context == "none" or "knowledge" not in context_parts(self.context)
        ):
            raise ConfigError(
                "--knowledge-hints reads the knowledge's entity list: add --context knowledge "
                "(or a combined one, captions+knowledge)"
            )

    @property
    def text_encoders(self) -> list[str]:
        return [t for t in (self.text or "").split("+") if t]

    @property
    def datasets(self) -> list[str]:
        return [d.strip() for d in self.dataset.split(",") if d.strip()]

    def describe(self) -> dict[str, object]:
        d = asdict(self)
        for name in ("label_map", "context_budget", "knowledge_hints"):
            if d[name] in (None, False):
                del d[name]  # a run record (and its key) as before these options existed
        return d


@dataclass
class EntryInfo:
    path: Path
    meta: dict[str, object]

    @property
    def key(self) -> str:
        return str(self.meta.get("key"))


class EntryIndex:
    """The metadata of every published entry in a cache, read once (attributes only). A damaged
    entry is never a candidate; it is remembered (``damaged``) so that looking for what it held
    says it is damaged instead of "run featurize first"."""

    def __init__(self, cache_root: Path) -> None:
        self.root = cache_root
        self.entries: list[EntryInfo] = []
        self.damaged: list[IntegrityError] = []
        for path in FeatureStore(cache_root).entries():
            try:
                with open_entry(path) as handle:
                    self.entries.append(EntryInfo(path, read_attrs(handle)))
            except IntegrityError as err:
                self.damaged.append(err)
            except CacheError:
                continue  # another schema version: never a candidate

    def check_damaged(
        self, kind: str, dataset: str, split: str, encoder: str | None = None, context: str = "none"
    ) -> None:
        """Raise the error of a damaged entry whose file name says it is the one looked for
        (``<dataset>/<split>/<kind>-<encoder>[+<context>]-<key>.h5``; any encoder when None)."""
        from featurize.build import slug

        folder = self.root / slug(dataset) / split
        stem = f"{kind}-{slug(encoder)}" if encoder is not None else None
        suffix = f"+{context}" if context != "none" else ""
        for err in self.damaged:
            path = Path(err.path)
            if path.parent != folder:
                continue
            name = path.name.rsplit("-", 1)[0]  # without -<key[:16]>.h5
            if name.startswith(f"{kind}-") if stem is None else name == stem + suffix:
                raise err

    def _hint(self, spec: InputSpec, what: str) -> str:
        vision = f" --vision {spec.vision}" if what == "vision" else ""
        text = f" --text {spec.text}" if what == "text" else ""
        ctx = f" --context {spec.context}" if spec.context != "none" and what == "text" else ""
        if ctx and spec.context_budget is not None:
            ctx += f" --context-budget {spec.context_budget}"
        return f"run `featurize {spec.dataset}{text}{vision}{ctx}` first (cache: {self.root})"

    def text_entry(self, spec: InputSpec, encoder: str, split: str) -> EntryInfo:
        found = [
            e
            for e in self.entries
            if e.meta.get("kind") == "text"
            and e.meta.get("dataset") == spec.dataset
            and e.meta.get("split") == split
            and e.meta.get("encoder") == encoder
            and e.meta.get("context", "none") == spec.context
            and (spec.context_budget is None or e.meta.get("context_budget") == spec.context_budget)
            and (spec.pooling is None or e.meta.get("pooling") == spec.pooling)
            and (spec.layers is None or layers_label(e.meta.get("layers")) == spec.layers)
        ]
        ctx = f" with --context {spec.context}" if spec.context != "none" else ""
        if not found:
            self.check_damaged("text", spec.dataset, split, encoder, spec.context)
            raise CacheError(
                f"no cached {encoder} features{ctx} for {spec.dataset}/{split}: "
                + self._hint(
                    InputSpec(
                        spec.dataset, encoder, context=spec.context, context_budget=spec.context_budget
                    ),
                    "text",
                )
            )
        if len(found) > 1 and spec.pooling is None and spec.layers is None:
            # What `featurize <dataset> --text <encoder>` writes with its defaults wins a tie.
            default = [e for e in found if _is_featurize_default(e.meta)]
            found = default if len(default) == 1 else found
        if len(found) > 1:
            choices = "; ".join(
                f"{e.path.name}: pooling={e.meta.get('pooling')} layers={layers_label(e.meta.get('layers'))} "
                f"precision={e.meta.get('precision')} images={_images_option(e.meta)}"
                + (f" context-budget={e.meta.get('context_budget')}" if spec.context != "none" else "")
                for e in found
            )
            raise ConfigError(
                f"{len(found)} cached {encoder} entries{ctx} fit {spec.dataset}/{split}; choose with "
                f"--pooling/--layers/--context-budget, or remove the others with `featurize rm`: {choices}"
            )
        return found[0]

    def image_entry(self, spec: InputSpec, split: str) -> EntryInfo | None:
        """The split's image entry, or None when no image of the split was found at featurize time."""
        assert spec.vision
        found = [
            e
            for e in self.entries
            if e.meta.get("kind") == "image"
            and e.meta.get("dataset") == spec.dataset
            and e.meta.get("split") == split
            and e.meta.get("encoder") == spec.vision
        ]
        if not found:
            self.check_damaged("image", spec.dataset, split, spec.vision)
        if len(found) > 1:
            raise ConfigError(
                f"{len(found)} cached {spec.vision} image entries fit {spec.dataset}/{split}: "
                + ", ".join(e.path.name for e in found)
                + "; remove the stale ones with `featurize rm`"
            )
        return found[0] if found else None

    def any_image_entry(self, spec: InputSpec) -> bool:
        return any(
            e.meta.get("kind") == "image"
            and e.meta.get("dataset") == spec.dataset
            and e.meta.get("encoder") == spec.vision
            for e in self.entries
        )


def _is_featurize_default(meta: dict[str, object]) -> bool:
    """featurize's defaults: the last four layers, and pooling ``auto``: the encoder's ``pooling``
    trait (mean for the decoder, first subword for the BERT family and any ``hf:...`` model)."""
    from featurize.text import TEXT_ENCODERS

    # An entry stores the encoder's name: a registered one (``llama``, also for llama=hf:...)
    # or ``hf:<id or folder>``, which gets the registry's default; NAME=... is read as NAME.
    name = str(meta.get("encoder", "")).split("=")[0]
    default_pooling = TEXT_ENCODERS.trait(name, "pooling")
    context = str(meta.get("context", "none"))
    return (
        layers_label(meta.get("layers")) == "last4"
        and meta.get("pooling") == default_pooling
        and meta.get("context_budget") == default_budget(context)
    )


def _images_option(meta: dict[str, object]) -> str:
    options = meta.get("reader_options")
    return str(options.get("images")) if isinstance(options, dict) else "?"


def check_schema(meta: dict[str, object], path: Path) -> None:
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise CacheError(
            f"{path}: cache schema {meta.get('schema_version')}, this toolkit reads {SCHEMA_VERSION}"
        )


def input_identity(index: EntryIndex, data: Any) -> dict[str, dict[str, object]]:
    """The encoder settings behind each cached input of ``data`` (its ``entries``: role -> key), so
    prediction, evaluation and fine-tuning rebuild the encoders alike (featurize.rebuild)."""
    wanted = (
        "encoder",
        "weights",
        "weights_format",
        "layers",
        "pooling",
        "max_length",
        "stride",
        "precision",
        "context",
        "context_budget",
        "vision_encoder",
    )
    by_key = {e.key: e.meta for e in index.entries}
    return {
        role: {k: by_key[key].get(k) for k in wanted if k in by_key.get(key, {})}
        for role, key in data.entries.items()
    }
