"""Strict validation of an LLM's answer: it must parse as JSON, hold an ``entities`` list with
exactly one label per input word, and use only the allowed labels.

Nothing is repaired silently: no label is renamed, no list is padded or cut. What is wrong is
said in words the retry message passes back to the model. The one leniency is where the JSON
object sits (models wrap it in code fences or a sentence), because that changes no label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    labels: list[str] | None  # the valid labels, or None
    problem: str | None = None  # why the answer is not valid

    @property
    def ok(self) -> bool:
        return self.labels is not None


def check_answer(text: str | None, n_words: int, allowed: list[str]) -> Verdict:
    if not text or not text.strip():
        return Verdict(None, "the answer was empty")
    data = _json_object(text)
    if data is None:
        return Verdict(None, "the answer is not a JSON object")
    if not isinstance(data, dict) or "entities" not in data:
        return Verdict(None, "the JSON object has no 'entities' key")
    items = data["entities"]
    if not isinstance(items, list):
        return Verdict(None, "'entities' is not a list")
    labels: list[str] = []
    for item in items:
        label = _label_of(item)
        if label is None:
            return Verdict(
                None, f"an item of 'entities' is not a label: {json.dumps(item, ensure_ascii=False)[:60]}"
            )
        labels.append(label)
    if len(labels) != n_words:
        return Verdict(None, f"'entities' holds {len(labels)} labels for {n_words} words")
    unknown = sorted(set(labels) - set(allowed))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        return Verdict(None, f"labels outside the allowed set: {shown}")
    return Verdict(labels)


def _label_of(item: object) -> str | None:
    """A label as a string, as ``{"label": ...}`` (with or without its word) or as a
    ``[word, label]`` pair; the forms a model writes for "one label per word"."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        value = item.get("label", item.get("tag"))
        return value if isinstance(value, str) else None
    if isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item):
        return item[1]
    return None


def _json_object(text: str) -> object | None:
    """The JSON value of the answer, or of the first ``{...}`` inside it (code fences, prose)."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
            return value
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    return None
