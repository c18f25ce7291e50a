"""The prompt of the LLM baseline: an editable template file, chat messages with K few-shot
examples from the training split, the image as an image part or its caption as text, and the
JSON schema of a valid answer (for servers that take structured-output requests).

The default template (``bench/prompts/thesis.txt``) is the thesis's instruction (§8.7); the
words are given as a JSON list so "one label per word" has one reading.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import random
from dataclasses import dataclass
from pathlib import Path
from string import Template

from featurize.errors import ConfigError, DataFormatError
from featurize.example import Example

SECTIONS = ("system", "user", "caption", "image", "retry")
REQUIRED = ("system", "user", "retry")
DEFAULT_TEMPLATE = "thesis.txt"
PROMPTS = Path(__file__).parent / "prompts"


@dataclass(frozen=True)
class PromptTemplate:
    sections: dict[str, str]
    source: str

    @classmethod
    def read(cls, path: Path | None = None) -> PromptTemplate:
        """The template at ``path``, or the packaged default."""
        if path is None:
            text = (PROMPTS / DEFAULT_TEMPLATE).read_text(encoding="utf-8")
            source = f"bench/prompts/{DEFAULT_TEMPLATE}"
        else:
            if not path.is_file():
                raise ConfigError(f"--template {path}: no such file")
            text, source = path.read_text(encoding="utf-8"), str(path)
        return cls(_parse(text, source), source)

    def render(self, section: str, **values: object) -> str:
        try:
            return Template(self.sections[section]).substitute({k: str(v) for k, v in values.items()})
        except KeyError as err:
            raise ConfigError(
                f"{self.source}: [{section}] uses the placeholder {err}, which it does not get "
                f"(it gets: {', '.join('$' + k for k in values)})"
            ) from None
        except ValueError as err:  # a lone '$'
            raise ConfigError(f"{self.source}: [{section}]: {err} (write $$ for a dollar sign)") from None


def _parse(text: str, source: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1].strip()
            if current not in SECTIONS:
                raise DataFormatError(
                    source, number, f"unknown section [{current}]; known: {', '.join(SECTIONS)}"
                )
            if current in sections:
                raise DataFormatError(source, number, f"section [{current}] appears twice")
            sections[current] = []
            continue
        if current is None:
            if stripped:
                raise DataFormatError(source, number, "text before the first [section] line")
            continue
        sections[current].append(line)
    missing = [s for s in REQUIRED if s not in sections]
    if missing:
        raise DataFormatError(
            source, None, f"missing section(s): {', '.join('[' + s + ']' for s in missing)}"
        )
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def answer_schema(labels: list[str], n_words: int) -> dict[str, object]:
    """A valid answer: ``{"entities": [label, ...]}`` with exactly one allowed label per word."""
    return {
        "type": "object",
        "properties": {
            "entities": {
                "type": "array",
                "items": {"type": "string", "enum": list(labels)},
                "minItems": n_words,
                "maxItems": n_words,
            }
        },
        "required": ["entities"],
        "additionalProperties": False,
    }


def answer_text(labels: list[str]) -> str:
    """How a correct answer looks (the few-shot examples' assistant turns)."""
    return json.dumps({"entities": labels}, ensure_ascii=False)


def few_shot(train: list[Example], k: int, seed: int) -> list[Example]:
    """K training examples, the same ones for the same seed."""
    if k < 0:
        raise ConfigError("--shots must be 0 or more")
    if k > len(train):
        raise ConfigError(f"--shots {k}: the training split has only {len(train)} examples")
    return [train[i] for i in sorted(random.Random(seed).sample(range(len(train)), k))]


@dataclass(frozen=True)
class PromptBuilder:
    template: PromptTemplate
    labels: list[str]
    context: str = "none"  # none or captions
    send_images: bool = False

    def values(self, words: list[str]) -> dict[str, object]:
        return {
            "labels": ", ".join(self.labels),
            "words": " ".join(words),
            "words_json": json.dumps(words, ensure_ascii=False),
            "n_words": len(words),
        }

    def user_content(self, example: Example) -> str | list[dict[str, object]]:
        text = self.template.render("user", **self.values(example.words))
        if self.context == "captions" and example.caption and "caption" in self.template.sections:
            text += "\n" + self.template.render(
                "caption", **self.values(example.words), caption=example.caption
            )
        image = next((p for p in example.image_paths if p), None) if self.send_images else None
        if image is None:
            return text
        if "image" in self.template.sections:
            text += "\n" + self.template.render("image", **self.values(example.words))
        return [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": data_url(Path(image))}},
        ]

    def messages(self, example: Example, shots: list[Example]) -> list[dict[str, object]]:
        system = self.template.render("system", labels=", ".join(self.labels))
        out: list[dict[str, object]] = [{"role": "system", "content": system}]
        for shot in shots:
            out.append({"role": "user", "content": self.user_content(shot)})
            out.append({"role": "assistant", "content": answer_text(shot.labels)})
        out.append({"role": "user", "content": self.user_content(example)})
        return out

    def retry(self, words: list[str], problem: str) -> dict[str, object]:
        return {
            "role": "user",
            "content": self.template.render("retry", **self.values(words), problem=problem),
        }


def data_url(path: Path) -> str:
    """An image file as a ``data:`` URL, the form OpenAI-compatible servers take inline."""
    kind = mimetypes.guess_type(path.name)[0] or "image/jpeg"
    try:
        payload = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError as err:
        raise ConfigError(f"cannot read image {path}: {err}") from None
    return f"data:{kind};base64,{payload}"
