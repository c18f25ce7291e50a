"""Entity types of several corpora mapped onto one scheme, so one head trains on all of them
(``heads train --dataset hipe-de,ehri-de,my-book.jsonl --label-map hicbam``).

Two maps are shipped:

- ``hicbam``: the thesis's HiCBaM scheme, PER / LOC / BUI (buildings) / MIS;
- ``conll``: PER / LOC / ORG / MISC.

They cover the types of every named dataset here (HIPE-2020: pers, loc, org, prod, time;
EHRI-NER: PERS, LOC, ORG, DATE, CAMP, GHETTO; the Twitter sets: PER, LOC, ORG, MISC / OTHER;
HiCBaM and annotate's default set: PER, LOC, BUI, MIS). A type mapped to ``O`` is dropped
(dates and times are not names in either scheme). ``--label-map OLD=NEW,...`` gives a map of
one's own; a type a map does not name is an error naming the type and the corpus, never a
silent O.
"""

from __future__ import annotations

from collections.abc import Mapping

from featurize.errors import ConfigError

DROP = "O"

SHIPPED: dict[str, dict[str, str]] = {
    "hicbam": {
        "PER": "PER", "PERS": "PER", "pers": "PER",
        "LOC": "LOC", "loc": "LOC", "GHETTO": "LOC",
        "BUI": "BUI", "CAMP": "BUI",  # a camp is a site of buildings, as HiCBaM's BUI
        "ORG": "MIS", "org": "MIS", "prod": "MIS", "MISC": "MIS", "OTHER": "MIS", "MIS": "MIS",
        "DATE": DROP, "time": DROP,
    },
    "conll": {
        "PER": "PER", "PERS": "PER", "pers": "PER",
        "LOC": "LOC", "loc": "LOC", "GHETTO": "LOC", "CAMP": "LOC", "BUI": "LOC",
        "ORG": "ORG", "org": "ORG",
        "MISC": "MISC", "OTHER": "MISC", "MIS": "MISC", "prod": "MISC",
        "DATE": DROP, "time": DROP,
    },
}  # fmt: skip


def resolve(spec: str | None) -> dict[str, str] | None:
    """A shipped map's name, or ``OLD=NEW`` pairs separated by commas (NEW ``O`` drops the type)."""
    if spec is None or not spec.strip():
        return None
    if spec in SHIPPED:
        return dict(SHIPPED[spec])
    pairs: dict[str, str] = {}
    for item in spec.split(","):
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ConfigError(
                f"--label-map {spec!r}: give a shipped map ({', '.join(SHIPPED)}) or OLD=NEW pairs, "
                "comma-separated (NEW O drops the type)"
            )
        pairs[old.strip()] = new.strip()
    return pairs


def apply(tags: list[list[str]], mapping: Mapping[str, str], corpus: str) -> list[list[str]]:
    """Each example's BIO tags with their types renamed; a dropped type becomes O."""
    unknown = sorted({t[2:] for seq in tags for t in seq if t != "O" and t[2:] not in mapping})
    if unknown:
        raise ConfigError(
            f"{corpus}: the label map does not name type(s) {', '.join(unknown)}; add them "
            f"(--label-map with OLD=NEW pairs, NEW O to drop one)"
        )

    def rename(tag: str) -> str:
        if tag == "O":
            return tag
        new = mapping[tag[2:]]
        return DROP if new == DROP else f"{tag[:2]}{new}"

    return [[rename(t) for t in seq] for seq in tags]
