"""Word and character vocabularies for heads that learn their own embeddings.

Built from the training split only and saved in the checkpoint's JSON config, so a loaded
model maps words exactly as it did in training. Words are lowercased and, on request,
stemmed (the thesis stems for its BiLSTM to shrink the embedding table; Snowball via nltk).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

PAD, UNK = 0, 1
MAX_CHARS = 20  # characters kept per word for the character CNN (the longest tweet tokens are URLs)


@lru_cache(maxsize=4)
def _stemmer(language: str):  # noqa: ANN202 - nltk has no types
    from nltk.stem.snowball import SnowballStemmer

    return SnowballStemmer(language)


@dataclass
class Vocabularies:
    words: list[str] = field(default_factory=list)  # index = id; 0 pad, 1 unknown
    chars: list[str] = field(default_factory=list)
    stem: str | None = None  # a Snowball language ("english", "german") or None
    min_count: int = 1

    def normalise(self, word: str) -> str:
        word = word.lower()
        return _stemmer(self.stem).stem(word) if self.stem else word

    @classmethod
    def build(cls, sentences: list[list[str]], stem: str | None = None, min_count: int = 1) -> Vocabularies:
        vocab = cls(stem=stem, min_count=min_count)
        counts = Counter(vocab.normalise(w) for s in sentences for w in s)
        vocab.words = ["<pad>", "<unk>"] + sorted(w for w, n in counts.items() if n >= min_count)
        chars = Counter(c for s in sentences for w in s for c in w)
        vocab.chars = ["<pad>", "<unk>"] + sorted(chars)
        return vocab

    def __post_init__(self) -> None:
        self._word_index = {w: i for i, w in enumerate(self.words)}
        self._char_index = {c: i for i, c in enumerate(self.chars)}

    def _reindex(self) -> None:
        self.__post_init__()

    def word_ids(self, words: list[str]) -> np.ndarray:
        if len(self._word_index) != len(self.words):
            self._reindex()
        return np.array([self._word_index.get(self.normalise(w), UNK) for w in words], dtype=np.int64)

    def char_ids(self, words: list[str]) -> np.ndarray:
        """(n_words, width) ids, width = longest word (at most MAX_CHARS), 0-padded."""
        if len(self._char_index) != len(self.chars):
            self._reindex()
        width = max(1, min(MAX_CHARS, max(len(w) for w in words)))
        out = np.zeros((len(words), width), dtype=np.int64)
        for i, w in enumerate(words):
            for j, c in enumerate(w[:width]):
                out[i, j] = self._char_index.get(c, UNK)
        return out

    def to_json(self) -> dict[str, object]:
        return {"words": self.words, "chars": self.chars, "stem": self.stem, "min_count": self.min_count}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Vocabularies:
        return cls(
            words=list(data["words"]),  # type: ignore[arg-type]
            chars=list(data["chars"]),  # type: ignore[arg-type]
            stem=data.get("stem"),  # type: ignore[arg-type]
            min_count=int(data.get("min_count", 1)),  # type: ignore[arg-type]
        )
