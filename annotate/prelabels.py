"""A model's entity types mapped onto the session's type set, for pre-labels.

A head trained on HIPE-2020 tags PER/LOC/ORG/MISC (or pers/loc/org/prod/time); a session
labels PER/LOC/BUI/MIS. Without a map every type outside the set would be O and the model
would pre-label only PER and LOC. ``--label-map``:

- ``auto`` (default): a model type already in the set keeps its name; the others go through
  the shipped map of :mod:`heads.label_maps` that sends the most of them into the set
  (``hicbam`` for PER/LOC/BUI/MIS, ``conll`` for PER/LOC/ORG/MISC);
- a shipped map's name (``hicbam``, ``conll``): that map, for the types it names;
- ``OLD=NEW`` pairs (``ORG=MIS,MISC=MIS``; NEW ``O`` drops the type): those, for the named types;
- ``none``: no map, the types outside the set become O.

In every case a model type in the set that the map does not name keeps its name, and a type
left without a target in the set becomes O: it is listed as dropped, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from featurize.errors import ConfigError
from heads.label_maps import DROP, SHIPPED, resolve

SPECS = ("auto", "none", *SHIPPED)


@dataclass(frozen=True)
class TypeMap:
    """Where each model type goes: a session type or ``O``."""

    spec: str  # what was asked for: auto, none, hicbam, conll, or the OLD=NEW pairs
    used: str  # what it became: identity, none, hicbam, conll or custom
    mapping: dict[str, str] = field(default_factory=dict)  # every model type -> session type or O

    @property
    def renamed(self) -> dict[str, str]:
        """The model types that change name (the dropped ones excluded)."""
        return {old: new for old, new in self.mapping.items() if new not in (old, DROP)}

    @property
    def dropped(self) -> list[str]:
        return [old for old, new in self.mapping.items() if new == DROP]

    def describe(self) -> str:
        """One line for the page and the console: ``ORG→MIS, MISC→MIS; time dropped``."""
        parts = [f"{old}→{new}" for old, new in self.renamed.items()]
        text = ", ".join(parts) if parts else "types as they are"
        if self.dropped:
            text += f"; dropped (become O): {', '.join(self.dropped)}"
        return text

    def record(self) -> dict[str, object]:
        """What a saved item keeps of the map (``suggestions.label_map``)."""
        return {"spec": self.spec, "used": self.used, "renamed": self.renamed, "dropped": self.dropped}

    def apply(self, tags: list[str]) -> list[str]:
        return map_tags(tags, self.mapping)


def model_types(tags: list[str]) -> list[str]:
    """The entity types of a head's tag list, in order (``["O", "B-PER", "I-PER"]`` -> ``["PER"]``)."""
    return list(dict.fromkeys(t[2:] for t in tags if t != "O" and t[1:2] == "-"))


def _shipped_score(name: str, pending: list[str], session: set[str]) -> int:
    return sum(SHIPPED[name].get(t) in session for t in pending)


def resolve_type_map(model: list[str], session: list[str], spec: str = "auto") -> TypeMap:
    """The map of ``model`` types onto ``session`` types that ``--label-map spec`` asks for."""
    spec = (spec or "auto").strip()
    inside = set(session)
    keep = {t: t for t in model if t in inside}
    if spec == "none":
        return TypeMap(spec, "none", {t: keep.get(t, DROP) for t in model})
    if spec == "auto":
        pending = [t for t in model if t not in inside]
        scores = {name: _shipped_score(name, pending, inside) for name in SHIPPED}
        best = max(SHIPPED, key=lambda name: scores[name])  # ties: the first shipped one
        if not pending or scores[best] == 0:
            return TypeMap(spec, "identity", {t: keep.get(t, DROP) for t in model})
        table = SHIPPED[best]
        mapping = {t: keep.get(t) or _target(table.get(t), inside) for t in model}
        return TypeMap(spec, best, mapping)
    table = resolve(spec) or {}
    if spec in SHIPPED:
        mapping = {t: _target(table[t], inside) if t in table else keep.get(t, DROP) for t in model}
        return TypeMap(spec, spec, mapping)
    for old, new in table.items():
        if old not in model:
            raise ConfigError(
                f"--label-map {spec!r}: the model has no type {old!r} (its types: {', '.join(model)})"
            )
        if new != DROP and new not in inside:
            raise ConfigError(
                f"--label-map {spec!r}: {new!r} is not a type of this session ({', '.join(session)}; "
                "O drops a type)"
            )
    return TypeMap(spec, "custom", {t: table.get(t) or keep.get(t, DROP) for t in model})


def _target(new: str | None, inside: set[str]) -> str:
    return new if new is not None and new in inside else DROP


def map_tags(tags: list[str], mapping: dict[str, str]) -> list[str]:
    """BIO tags with their types renamed; a type without a target becomes O, and an I- that
    no longer continues a span of its type (after O or another type) becomes B-."""
    out: list[str] = []
    for tag in tags:
        new = mapping.get(tag[2:], DROP) if tag != "O" else DROP
        if new == DROP:
            out.append("O")
            continue
        prefix = tag[:1]
        if prefix == "I" and (not out or out[-1][2:] != new):
            prefix = "B"
        out.append(f"{prefix}-{new}")
    return out
