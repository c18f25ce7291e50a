"""``featurize knowledge``: ask an OpenAI-compatible chat model for PGIM-style auxiliary
knowledge per example (the entities it sees with their kinds, then a short reasoning) and
write it as a knowledge file that ``featurize --context knowledge`` reads.

- One request per example (:mod:`featurize.knowledge_prompt` builds it), sent through
  :class:`featurize.llm_client.ChatClient`: every answer is cached on disk, so an interrupted
  run resumes and a re-run sends nothing; back-off and retries are the client's.
- An example whose request fails for good (every attempt spent) or whose answer is empty gets
  no knowledge: it is counted, its id listed in the summary, and it is absent from the file.
  Nothing is ever invented for it. A refused key or an unknown model (HTTP 401/403/404) stops
  the run instead: every other request would fail the same way.
- The file (``<id><TAB><knowledge>``, :func:`featurize.knowledge.write_knowledge`, atomic) is
  keyed by :func:`featurize.knowledge.example_key`, in dataset order over the chosen splits;
  ``<out>.json`` beside it says how it was made (model, server, shots, seed, counts per split).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console

from featurize.atomic import atomic_write_text
from featurize.cache.store import cache_dir
from featurize.datasets import DEFAULT_DATASET, SPLITS, Dataset, LoadOptions, load_dataset
from featurize.errors import ConfigError
from featurize.example import Example
from featurize.knowledge import example_key, write_knowledge
from featurize.knowledge_prompt import kinds_of, messages, pick_shots
from featurize.llm_client import ChatClient, ServerError
from featurize.llm_progress import examples_bar

DEFAULT_SHOTS = 4  # enough to show the answer's shape; small enough for a 135M model's window
DEFAULT_MAX_TOKENS = 256  # PGIM's texts average about 130 subwords; featurize reads the first 96
# HTTP statuses after which no request of the run can succeed: the run stops
FATAL_STATUSES = (401, 403, 404)


@dataclass
class KnowledgeRunConfig:
    """Everything a knowledge run depends on. ``base_url`` ``local`` starts llama.cpp's server
    with SmolLM2 for the run; ``limit`` counts per split (0: all); ``out`` None is
    :func:`default_out`. The API key is read from the variable named ``api_key_env`` by the
    client only and is never written anywhere."""

    dataset: str = DEFAULT_DATASET
    splits: list[str] | None = None  # None: every split of the dataset
    base_url: str = "local"
    model: str = ""  # required unless base_url is local (default: smollm2-135m-instruct)
    api_key_env: str = "OPENAI_API_KEY"
    shots: int = DEFAULT_SHOTS
    seed: int = 0
    concurrency: int = 4
    timeout: float = 120.0
    attempts: int = 6
    max_tokens: int = DEFAULT_MAX_TOKENS
    limit: int = 0
    out: Path | None = None
    data_dir: Path | None = None
    cache_dir: Path | None = None
    captions: bool = True
    captions_file: Path | None = None  # None: the dataset's own captions, when it has them
    format: str | None = None  # for a dataset given as a path
    threads: int = 0  # CPU threads of the local server (0: all cores)

    def __post_init__(self) -> None:
        if not self.base_url:
            raise ConfigError("--base-url: give an OpenAI-compatible endpoint (.../v1) or 'local'")
        if self.base_url != "local" and not self.model:
            raise ConfigError("--model: name the server's model (a server other than 'local' needs it)")
        for option, value, least in (
            ("--shots", self.shots, 0),
            ("--limit", self.limit, 0),
            ("--threads", self.threads, 0),
            ("--concurrency", self.concurrency, 1),
            ("--attempts", self.attempts, 1),
            ("--max-tokens", self.max_tokens, 1),
        ):
            if value < least:
                raise ConfigError(f"{option} must be at least {least}, got {value}")
        if self.timeout <= 0:
            raise ConfigError(f"--timeout must be more than 0 seconds, got {self.timeout:g}")
        if not self.api_key_env.strip():
            raise ConfigError("--api-key-env: name an environment variable (or leave the default)")


@dataclass
class SplitCounts:
    examples: int = 0
    written: int = 0
    failed: int = 0
    cached: int = 0
    seconds: float = 0.0


@dataclass
class KnowledgeSummary:
    """What a run did; :meth:`to_json` is the ``<out>.json`` file."""

    out: Path
    dataset: str
    model: str
    server: str
    shots: int
    seed: int
    shot_ids: list[str]
    captions: bool
    max_tokens: int
    splits: dict[str, SplitCounts]
    failed: list[dict[str, str]] = field(default_factory=list)  # split, id, error
    duplicates: int = 0  # examples whose id an earlier one already had (asked once)
    requests: int = 0
    seconds: float = 0.0

    @property
    def totals(self) -> SplitCounts:
        return SplitCounts(
            sum(c.examples for c in self.splits.values()),
            sum(c.written for c in self.splits.values()),
            sum(c.failed for c in self.splits.values()),
            sum(c.cached for c in self.splits.values()),
            self.seconds,
        )

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["out"] = str(self.out)
        data["totals"] = asdict(self.totals)
        return data


def default_out(cache: Path | None, dataset: str, model: str) -> Path:
    """``<cache>/knowledge/<dataset>-<model>.tsv`` (the model name made file-safe)."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)[:60]
    return cache_dir(cache) / "knowledge" / f"{dataset}-{slug}.tsv"


def request_cache(cache: Path | None) -> Path:
    """Where the answers are cached: ``<cache>/knowledge/requests``."""
    return cache_dir(cache) / "knowledge" / "requests"


def _load(config: KnowledgeRunConfig) -> tuple[Dataset, list[str]]:
    """The dataset with the chosen splits (and train, for the in-context examples)."""
    wanted = list(dict.fromkeys(config.splits)) if config.splits else None
    load = wanted + ["train"] if wanted and config.shots and "train" not in wanted else wanted
    options = LoadOptions(
        data_dir=config.data_dir,
        format=config.format,
        captions=config.captions_file,
        use_captions=config.captions,
    )
    dataset = load_dataset(config.dataset, options, load)
    chosen = wanted or list(dataset.splits)
    order = {name: i for i, name in enumerate([*SPLITS, *dataset.spec.files])}
    chosen.sort(key=lambda s: order.get(s, len(order)))
    if config.shots and "train" not in dataset.splits:
        raise ConfigError(
            f"--shots {config.shots}: dataset {dataset.name} has no train split to draw in-context "
            "examples from (it has " + ", ".join(dataset.splits) + "); use --shots 0"
        )
    return dataset, chosen


@dataclass
class _Answer:
    text: str | None
    cached: bool
    error: str | None


def _ask(client: ChatClient, chat: list[dict], max_tokens: int, stop: threading.Event) -> _Answer:
    if stop.is_set():  # another request was refused for good: send nothing more
        return _Answer(None, False, "not asked: the run stopped")
    try:
        reply = client.complete(chat, None, max_tokens)
    except ServerError as err:
        if err.status in FATAL_STATUSES:
            stop.set()
            raise
        return _Answer(None, False, str(err))
    text = reply.text.strip()
    return _Answer(text or None, reply.cached, None if text else "empty answer")


def generate_knowledge(config: KnowledgeRunConfig, console: Console, client: ChatClient) -> KnowledgeSummary:
    """Ask ``client`` for every chosen example's knowledge; write the file and its summary."""
    dataset, chosen = _load(config)
    train = dataset.splits["train"].examples if "train" in dataset.splits else []
    shots = pick_shots(train, config.shots, config.seed) if config.shots else []
    types = set(dataset.spec.types or ()) or {
        t[2:] for split in dataset.splits.values() for e in split.examples for t in e.labels if t != "O"
    }
    kinds = kinds_of(types)
    out = config.out or default_out(config.cache_dir, dataset.name, client.model)
    summary = KnowledgeSummary(
        out,
        dataset.name,
        client.model,
        client.server_identity,
        len(shots),
        config.seed,
        [e.id for e in shots],
        config.captions,
        config.max_tokens,
        {},
    )
    texts: dict[str, str] = {}  # id -> knowledge, for every example answered
    order: list[str] = []  # ids in dataset order over the chosen splits
    seen: set[str] = set()
    started = time.perf_counter()
    for split in chosen:
        examples = dataset.splits[split].examples
        examples = examples[: config.limit] if config.limit else examples
        todo: list[tuple[str, Example]] = []
        for example in examples:
            key = example_key(example)
            if key in seen:
                summary.duplicates += 1
                continue
            seen.add(key)
            order.append(key)
            todo.append((key, example))
        counts = summary.splits[split] = SplitCounts(examples=len(todo))
        split_started = time.perf_counter()
        description = f"{dataset.name}/{split} {client.model}"
        with examples_bar(console, description, len(todo)) as done:
            pool, stop = ThreadPoolExecutor(config.concurrency), threading.Event()
            try:
                futures = {
                    pool.submit(
                        _ask, client, messages(ex, shots, kinds, config.captions), config.max_tokens, stop
                    ): key
                    for key, ex in todo
                }
                for future in as_completed(futures):
                    key, answer = futures[future], future.result()
                    counts.cached += int(answer.cached)
                    if answer.text is None:
                        counts.failed += 1
                        summary.failed.append({"split": split, "id": key, "error": str(answer.error)})
                    else:
                        counts.written += 1
                        texts[key] = answer.text
                    done(f"failed {counts.failed}, cached {counts.cached}")
            finally:  # an abort (a refused key, Ctrl-C) sends nothing more
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
        counts.seconds = time.perf_counter() - split_started
    summary.seconds = time.perf_counter() - started
    summary.requests = client.stats.requests
    position = {key: i for i, key in enumerate(order)}
    summary.failed.sort(key=lambda f: position[f["id"]])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_knowledge(out, ((key, texts[key]) for key in order if key in texts))
    atomic_write_text(summary_path(out), json.dumps(summary.to_json(), indent=1, ensure_ascii=False))
    return summary


def summary_path(out: Path) -> Path:
    """``<out>.json``: how the knowledge file was made."""
    return out.with_name(out.name + ".json")


def run_knowledge(config: KnowledgeRunConfig, console: Console) -> KnowledgeSummary:
    """``featurize knowledge``: start the local llama.cpp server when ``base_url`` is ``local``
    (stopped afterwards), or use the given endpoint; then :func:`generate_knowledge`."""
    from featurize.llm_server import endpoint

    with endpoint(config.base_url, config.model, console, config.threads or None) as server:
        client = ChatClient(
            server.base_url,
            server.model,
            request_cache(config.cache_dir),
            server_identity=server.identity,
            api_key_env=config.api_key_env,
            timeout=config.timeout,
            attempts=config.attempts,
            structured="off",
            seed=config.seed,
        )
        return generate_knowledge(config, console, client)
