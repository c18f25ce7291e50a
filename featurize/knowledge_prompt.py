"""The prompt of ``featurize knowledge``, after PGIM (Li et al., Findings of EMNLP 2023): a
system message that asks for the named entities with their kinds and then a short reasoning
(plain text), K in-context examples from the training split, then the text to describe.

The in-context answers are written here from the gold labels of those training examples
(``Named entities: 1. Kawhi Leonard (person) ... Reasoning: ...``), never taken from PGIM's
published knowledge and never from dev or test, so the prompt holds nothing a test score could
profit from. PGIM picks its examples by similarity to each text; here they are K random
training examples fixed by the seed, the same for every text, so a run is one cacheable prompt
prefix and a re-run with the same seed asks exactly the same questions.
"""

from __future__ import annotations

import random

from featurize.errors import ConfigError
from featurize.example import Example
from featurize.labels import span_starts_with_i

# Entity types of the named datasets, as the words a model reads; any other type is shown in
# lower case (``CAMP`` -> ``camp``).
TYPE_WORDS = {
    "PER": "person",
    "PERS": "person",
    "LOC": "location",
    "ORG": "organization",
    "MISC": "miscellaneous",
    "OTHER": "miscellaneous",
    "PROD": "product",
    "DATE": "date",
}

SYSTEM = (
    "You help to recognise named entities in short texts such as tweets. Given a text and, when "
    "there is one, a caption describing the image posted with it, write auxiliary knowledge about "
    "the text: first 'Named entities:' and the named entities in the text, numbered, each with its "
    "kind in brackets ({kinds}, ...); then 'Reasoning:' and a few sentences on who or what each "
    "entity is and how the text and the image relate. Answer in plain text, not JSON, in at most "
    "about 120 words."
)


def type_word(entity_type: str) -> str:
    """``PER`` -> ``person``: the kind as a model reads it."""
    return TYPE_WORDS.get(entity_type.upper(), entity_type.lower())


def gold_spans(example: Example) -> list[tuple[str, str]]:
    """The example's gold entities as ``(words, kind)`` in text order (a span opened by I- counts,
    as conlleval reads it)."""
    spans: list[tuple[list[str], str]] = []
    opens = set(span_starts_with_i(example.labels))
    for i, (word, tag) in enumerate(zip(example.words, example.labels)):
        if tag.startswith("B-") or i in opens:
            spans.append(([word], tag[2:]))
        elif tag.startswith("I-") and spans:
            spans[-1][0].append(word)
    return [(" ".join(words), type_word(kind)) for words, kind in spans]


def _a(kind: str) -> str:
    """``person`` -> ``a person``, ``organization`` -> ``an organization``."""
    if kind == "miscellaneous":
        return "a miscellaneous entity"
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def gold_answer(example: Example) -> str:
    """The in-context answer of one training example, from its gold labels only."""
    spans = gold_spans(example)
    if not spans:
        return "Named entities: none.\nReasoning: The text names no person, place, organization or other named thing."
    listed = "\n".join(f"{n}. {text} ({kind})" for n, (text, kind) in enumerate(spans, start=1))
    named = "; ".join(f"{text} is {_a(kind)}" for text, kind in spans)
    return f"Named entities:\n{listed}\nReasoning: The text names {len(spans)} entit{'y' if len(spans) == 1 else 'ies'}: {named}."


def query(example: Example, captions: bool) -> str:
    """The user turn: the words, and the image's caption when there is one (and captions are on)."""
    text = f"Text: {' '.join(example.words)}"
    if captions and example.caption:
        text += f"\nImage caption: {example.caption}"
    return text


def pick_shots(train: list[Example], k: int, seed: int) -> list[Example]:
    """K training examples in their file order, the same ones for the same seed."""
    if k < 0:
        raise ConfigError("--shots must be 0 or more")
    if k > len(train):
        raise ConfigError(f"--shots {k}: the training split has only {len(train)} examples")
    return [train[i] for i in sorted(random.Random(seed).sample(range(len(train)), k))]


def kinds_of(types: set[str]) -> str:
    """The kinds the system message lists: the dataset's types as words, in a stable order."""
    words = sorted({type_word(t) for t in types}) or ["person", "location", "organization"]
    return ", ".join(words)


def messages(example: Example, shots: list[Example], kinds: str, captions: bool) -> list[dict]:
    """The chat messages of one request: system, K user/assistant pairs, the query."""
    out: list[dict] = [{"role": "system", "content": SYSTEM.format(kinds=kinds)}]
    for shot in shots:
        out.append({"role": "user", "content": query(shot, captions)})
        out.append({"role": "assistant", "content": gold_answer(shot)})
    out.append({"role": "user", "content": query(example, captions)})
    return out
