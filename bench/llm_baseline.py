"""``bench llm``: an OpenAI-compatible chat model prompted to tag every word, scored with the
same metrics and report format as the heads.

Per example: the prompt (with K fixed few-shot examples), the answer checked strictly
(``bench.llm_answers``), and on a bad answer at most ``retries`` more turns that say what was
wrong. An example still without a valid answer is tagged all-O and counted as failed: it is
never dropped (the thesis dropped such answers, which flatters the score), and the report
gives the numbers of retries and failures.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console

from bench.llm_answers import check_answer
from bench.llm_prompt import PromptBuilder, PromptTemplate, answer_schema, few_shot
from bench.references import REFERENCES
from featurize.datasets import DEFAULT_DATASET, LoadOptions, load_dataset
from featurize.errors import ConfigError
from featurize.example import Example
from featurize.labels import tag_order
from featurize.llm_client import ChatClient
from featurize.llm_progress import examples_bar
from heads.metrics import METRIC_NOTES, all_scores
from heads.report_table import Report, save_reports

CONTEXTS = ("none", "captions")


@dataclass
class LLMRunConfig:
    dataset: str = DEFAULT_DATASET
    split: str = "test"
    base_url: str = "local"
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    shots: int = 0
    context: str = "none"
    image_dir: Path | None = None
    image_map: Path | None = None
    template: Path | None = None
    seed: int = 0
    retries: int = 2
    concurrency: int = 4
    timeout: float = 120.0
    attempts: int = 6
    structured: str = "auto"
    max_tokens: int = 0  # 0: 24 + 12 per word
    limit: int = 0  # 0: the whole split
    data_dir: Path | None = None
    out: Path = Path("runs/bench-llm")
    threads: int = 0  # CPU threads of the local server (0: all cores)

    def __post_init__(self) -> None:
        if not self.base_url:
            raise ConfigError("--base-url: give an OpenAI-compatible endpoint (.../v1) or 'local'")
        if self.base_url != "local" and not self.model:
            raise ConfigError("--model: name the server's model (a server other than 'local' needs it)")
        if self.context not in CONTEXTS:
            raise ConfigError(f"--context must be one of {', '.join(CONTEXTS)}")
        if self.retries < 0 or self.concurrency < 1 or self.limit < 0:
            raise ConfigError("--retries and --limit must be 0 or more, --concurrency at least 1")


@dataclass
class Outcome:
    labels: list[str]
    valid: bool
    retries: int
    requests: int
    cached: int
    problems: list[str] = field(default_factory=list)


def tag_example(
    example: Example,
    shots: list[Example],
    builder: PromptBuilder,
    client: ChatClient,
    labels: list[str],
    retries: int,
    max_tokens: int,
) -> Outcome:
    n = len(example.words)
    messages = builder.messages(example, shots)
    schema = answer_schema(labels, n)
    tokens = max_tokens or 24 + 12 * n
    outcome = Outcome(["O"] * n, False, 0, 0, 0)
    for turn in range(retries + 1):
        reply = client.complete(messages, schema, tokens)
        outcome.requests += reply.attempts
        outcome.cached += int(reply.cached)
        verdict = check_answer(reply.text, n, labels)
        if verdict.labels is not None:
            outcome.labels, outcome.valid, outcome.retries = verdict.labels, True, turn
            return outcome
        outcome.problems.append(str(verdict.problem))
        messages = messages + [
            {"role": "assistant", "content": reply.text},
            builder.retry(example.words, str(verdict.problem)),
        ]
    outcome.retries = retries
    return outcome


def run_llm_baseline(config: LLMRunConfig, console: Console, client: ChatClient) -> dict[str, object]:
    """Tag the split, score it, write predictions and the report; returns the summary row."""
    wanted = [config.split] + (["train"] if config.shots and config.split != "train" else [])
    options = LoadOptions(
        data_dir=config.data_dir,
        images=config.image_dir,
        image_map=config.image_map,
        use_captions=config.context == "captions",
    )
    dataset = load_dataset(config.dataset, options, wanted)
    examples = dataset.splits[config.split].examples
    if config.limit:
        examples = examples[: config.limit]
    train = dataset.splits["train"].examples if "train" in dataset.splits else []
    types = {t[2:] for split in dataset.splits.values() for e in split.examples for t in e.labels if t != "O"}
    labels = tag_order({"O"} | {f"{prefix}-{t}" for t in types for prefix in "BI"})
    shots = few_shot(train, config.shots, config.seed) if config.shots else []
    if config.context == "captions" and not any(e.caption for e in examples):
        raise ConfigError(f"--context captions: no captions found for {config.dataset}/{config.split}")
    send_images = config.image_dir is not None
    if send_images and not any(p for e in examples for p in e.image_paths):
        raise ConfigError(
            f"--image-dir {config.image_dir}: none of the {len(examples)} examples' images is there"
        )
    builder = PromptBuilder(PromptTemplate.read(config.template), labels, config.context, send_images)

    outcomes: list[Outcome | None] = [None] * len(examples)
    counts = {"retries": 0, "failed": 0}
    started = time.perf_counter()
    description = f"{config.dataset}/{config.split} {client.model}"
    with (
        examples_bar(console, description, len(examples)) as done,
        ThreadPoolExecutor(config.concurrency) as pool,
    ):
        futures = {
            pool.submit(tag_example, ex, shots, builder, client, labels, config.retries, config.max_tokens): i
            for i, ex in enumerate(examples)
        }
        for future in as_completed(futures):
            outcome = future.result()
            outcomes[futures[future]] = outcome
            counts["retries"] += outcome.retries  # results arrive in this thread only
            counts["failed"] += int(not outcome.valid)
            done(f"retries {counts['retries']}, failed {counts['failed']}, cached {client.stats.cached}")
    seconds = time.perf_counter() - started
    done_outcomes = [o for o in outcomes if o is not None]
    gold = [e.labels for e in examples]
    predicted = [o.labels for o in done_outcomes]
    scores = all_scores(gold, predicted)
    return _write(
        config, client, examples, done_outcomes, scores, seconds, len(shots), builder.template.source
    )


def _write(
    config: LLMRunConfig,
    client: ChatClient,
    examples: list[Example],
    outcomes: list[Outcome],
    scores: dict[str, object],
    seconds: float,
    shots: int,
    template: str,
) -> dict[str, object]:
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in client.model)[:60]
    stem = f"llm-{config.dataset}-{config.split}-{slug}"
    config.out.mkdir(parents=True, exist_ok=True)
    predictions = config.out / f"{stem}-predictions.jsonl"
    with predictions.open("w", encoding="utf-8") as handle:
        for ex, o in zip(examples, outcomes):
            row = {"id": ex.id, "words": ex.words, "gold": ex.labels, "predicted": o.labels}
            row |= {"valid": o.valid, "retries": o.retries, "problems": o.problems}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    first_try = sum(1 for o in outcomes if o.valid and o.retries == 0)
    row: dict[str, object] = {
        "model": client.model,
        "dataset": config.dataset,
        "split": config.split,
        "examples": len(examples),
        "shots": shots,
        "context": "image parts" if config.image_dir else config.context,
        "entity F1": 100 * float(scores["entity_f1"]),  # type: ignore[arg-type]
        "entity P": 100 * float(scores["entity_precision"]),  # type: ignore[arg-type]
        "entity R": 100 * float(scores["entity_recall"]),  # type: ignore[arg-type]
        "token macro F1": 100 * float(scores["token_macro_f1"]),  # type: ignore[arg-type]
        "entity F1 strict": 100 * float(scores["entity_f1_strict"]),  # type: ignore[arg-type]
        "valid first try": first_try,
        "retries": sum(o.retries for o in outcomes),
        "failed (all-O)": sum(1 for o in outcomes if not o.valid),
        "requests": client.stats.requests,
        "cached answers": client.stats.cached,
        "back-offs": client.stats.backoffs,
        "structured output": client.mode,
        "seconds": seconds,
    }
    report = Report(
        f"LLM prompting on {config.dataset}/{config.split}",
        list(row),
        [row],
        command="bench " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["llm"] else "",
    )
    report.notes += [
        f"{METRIC_NOTES['entity_f1']}; token macro F1: {METRIC_NOTES['token_macro_f1']}.",
        f"Template {template}; few-shot examples from train fixed by seed {config.seed}; temperature "
        f"{client.temperature}; at most {config.retries} retries an example; an example without a valid "
        "answer after them is tagged all-O and counted, never dropped.",
        f"Predictions: {predictions}. Answers are cached under {client.cache_dir}: a re-run sends no request.",
    ]
    published = Report(
        "Published, NOT produced by this run",
        ["model", "metric", config.dataset, "source"],
        [
            {
                "model": r.model,
                "metric": r.metric,
                config.dataset: r.value(config.dataset),
                "source": r.source,
            }
            for r in REFERENCES
            if r.value(config.dataset) is not None
        ],
        notes=[
            "The thesis's GPT-4o-mini number is token-level macro F1 over its own T17 splits, with "
            "answers holding labels outside the set filtered out of the evaluation (up to 10 of 860)."
        ],
    )
    paths = save_reports([report, published], config.out / "report", stem, f"bench llm: {client.model}")
    (config.out / "report" / f"{stem}.config.json").write_text(
        json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}, indent=1)
    )
    return row | {"report": str(paths["md"]), "predictions": str(predictions), "scores": scores}


def run(config: LLMRunConfig, console: Console) -> dict[str, object]:
    """``bench llm``: start the local llama.cpp server when ``base_url`` is ``local`` (stopped
    afterwards), or use the given endpoint; tag, score and report (:func:`run_llm_baseline`)."""
    from featurize.llm_server import endpoint

    with endpoint(config.base_url, config.model, console, config.threads or None) as server:
        client = ChatClient(
            server.base_url,
            server.model,
            config.out / "cache",
            server_identity=server.identity,
            api_key_env=config.api_key_env,
            timeout=config.timeout,
            attempts=config.attempts,
            structured=config.structured,
            seed=config.seed,
        )
        return run_llm_baseline(config, console, client)
