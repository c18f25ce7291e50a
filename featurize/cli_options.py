"""The command-line options that several console scripts share, declared once.

``featurize``, ``heads``, ``bench`` and ``annotate`` take these with the same name, type and
help text; a command only sets its default (most defaults are ``None``: "the library's
default", which lives beside the code that uses it, never here or in a CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from featurize.cache.store import CACHE_DIR_ENV
from featurize.datasets import DATA_DIR_ENV

CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help=f"The feature store [env {CACHE_DIR_ENV}, default ./cache]."),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help=f"Folder holding the named datasets [env {DATA_DIR_ENV}, default ./data]."
    ),
]
Dataset = Annotated[
    str,
    typer.Option("--dataset", help="A named dataset (t15, t17, hipe-de, ...; see `featurize datasets`)."),
]
Datasets = Annotated[
    str | None,
    typer.Option("--dataset", help="Datasets, comma-separated (default: every cached one)."),
]
Corpora = Annotated[
    str,
    typer.Option(
        "--dataset",
        help="A cached dataset (t17, t15, hipe-de, ...), or several comma-separated, read as one "
        "(see --label-map).",
    ),
]
CorporaLabelMap = Annotated[
    str | None,
    typer.Option(
        "--label-map",
        help="Map the corpora's entity types onto one scheme (--dataset a,b): hicbam (PER/LOC/BUI/MIS), "
        "conll (PER/LOC/ORG/MISC), or OLD=NEW pairs, comma-separated (NEW O drops a type).",
    ),
]
Text = Annotated[
    str | None,
    typer.Option(
        "--text",
        help="Text encoder(s): a name from `featurize encoders`, hf:<hub id or folder>, or NAME=hf:...; "
        "comma-separated for several runs, joined with + for one head reading both (minilm+mpnet); "
        "'none' for heads with their own word embeddings.",
    ),
]
Vision = Annotated[
    str | None,
    typer.Option(
        "--vision",
        help="Vision encoder(s): vit, cnn, labels, clip=<model>:<checkpoint> or NAME=hf:<folder>; "
        "comma-separated; 'none' for none.",
    ),
]
Context = Annotated[
    str | None,
    typer.Option(
        "--context",
        help="A second text segment read with the words: none, captions (the image's caption), labels "
        "(its top-5 ImageNet label words), neighbours (the sentences before and after it in its "
        "document) or knowledge (LLM-written knowledge, PGIM's for t15/t17, or --knowledge FILE); "
        "kinds joined with + are read as one segment (captions+knowledge); comma-separated for several.",
    ),
]
ContextBudget = Annotated[
    int | None,
    typer.Option(
        "--context-budget",
        help="Subwords of the second segment read at most, its first ones (part of the cache key). "
        "Default: each kind's own (knowledge: featurize.contexts, chosen on validation; the others: "
        "half a window, the most it can be).",
        show_default=False,
    ),
]
KnowledgeHints = Annotated[
    bool | None,
    typer.Option(
        "--knowledge-hints/--no-knowledge-hints",
        help="Per-word columns read from the knowledge's entity list (which listed name a word is part "
        "of, and the kind it was given), appended to the word features; needs a --context with "
        "knowledge. heads train: off unless given. bench heads: each knowledge context is run with "
        "and without them unless --no-knowledge-hints. bench finetune: the winner's with --best, else off.",
        show_default=False,
    ),
]
KnowledgeFile = Annotated[
    Path | None,
    typer.Option(
        "--knowledge",
        help='Knowledge file for --context knowledge: TSV <id><TAB><text> or JSONL {"id", "knowledge"}, '
        "joined by image id or example id (default: the dataset's own, PGIM's for t15/t17).",
    ),
]
Types = Annotated[
    str | None,
    typer.Option(
        "--types",
        help="Entity types a user file declares, comma-separated as written in it (PER,LOC,ORG,MISC): "
        "a tag of any other type is refused with its file and line. Without it the types found are "
        "printed. Part of the cache key when given; named datasets declare their own.",
    ),
]
Modality = Annotated[
    str | None,
    typer.Option("--modality", help="both, text or image: the unimodal variants of the fusion heads."),
]
Head = Annotated[str | None, typer.Option("--head", help="A head from `heads list`.")]
Seed = Annotated[
    int, typer.Option("--seed", help="Fixes every random choice: the same seed, the same numbers.")
]
Images = Annotated[
    Path | None,
    typer.Option(
        "--images", help="Folder (searched recursively) where image ids are resolved by file name or stem."
    ),
]
ImageMap = Annotated[
    Path | None,
    typer.Option(
        "--image-map",
        help="TSV <image id><TAB><path under --images> for images saved under other names.",
    ),
]
Device = Annotated[str, typer.Option("--device", help="auto (a GPU when present), cpu or cuda.")]
LearningRates = Annotated[
    list[str] | None,
    typer.Option(
        "--lr",
        help="Learning rate per component, NAME=VALUE (repeat or comma-separate): text, vision, fusion, "
        "inner_lstm, crf, dense.",
    ),
]
HeadOptions = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Head hyperparameters NAME=VALUE (repeat or comma-separate); see `heads list`."
    ),
]
Pooling = Annotated[
    str | None,
    typer.Option("--pooling", help="Subwords to word: first, mean or last (auto: the encoder's own)."),
]
Layers = Annotated[
    str | None, typer.Option("--layers", help="Hidden states averaged per subword: last, lastK or indices.")
]
ReportFolder = Annotated[Path, typer.Option("--out", help="Folder for the report (.md, .json, .csv).")]


def parse_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """``--set a=1,b=2 --set c=3`` -> ``{"a": "1", "b": "2", "c": "3"}``."""
    from featurize.errors import ConfigError

    pairs: dict[str, str] = {}
    for value in values or []:
        for item in value.split(","):
            if not item.strip():
                continue
            if "=" not in item:
                raise ConfigError(f"{option}: expected NAME=VALUE, got {item!r}")
            name, _, val = item.partition("=")
            pairs[name.strip()] = val.strip()
    return pairs


def parse_rates(values: list[str] | None) -> dict[str, float]:
    """``--lr text=1e-5,crf=2e-4`` -> learning rates per component."""
    from featurize.errors import ConfigError

    rates = {}
    for name, value in parse_pairs(values, "--lr").items():
        try:
            rates[name] = float(value)
        except ValueError:
            raise ConfigError(f"--lr {name}={value}: the rate must be a number, e.g. {name}=1e-5") from None
    return rates


def names(value: str | None) -> list[str] | None:
    """A comma-separated option: None stays None ("the default"); otherwise the names as
    :func:`featurize.api.names` reads them (``none`` dropped, so ``--vision none`` is the empty list)."""
    from featurize.api import names as split_names

    return None if value is None else split_names(value)


# Training options (heads train, bench heads, bench grid-speed, bench finetune); each command
# takes its default from its own configuration object (heads.train_config, bench.grid).
Heads = Annotated[
    str | None,
    typer.Option("--head", help="Heads, comma-separated (default: every registered; see `heads list`)."),
]
Epochs = Annotated[int, typer.Option("--epochs", help="Most epochs.", min=1)]
Patience = Annotated[
    int, typer.Option("--patience", help="Stop after this many epochs without a better dev score.", min=1)
]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Examples per (micro-)batch.", min=1)]
Clip = Annotated[float, typer.Option("--clip", help="Max gradient norm (0: off).")]
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        help="fp32, bf16 (training steps under bf16 autocast; weights and evaluation stay fp32) or auto "
        "(bf16 where the hardware has it natively).",
    ),
]
Threads = Annotated[
    int,
    typer.Option(
        "--threads",
        help="torch threads per run; 1 is fastest here for these small recurrent steps (0: torch's default).",
    ),
]
Seeds = Annotated[int, typer.Option("--seeds", help="Seeds 0..N-1 per configuration.", min=1)]
FirstSeed = Annotated[
    int,
    typer.Option(
        "--first-seed",
        help="Start the seeds here: --first-seed S --seeds N runs S..S+N-1 (one seed per machine or "
        "session, into one run store or several).",
        min=0,
    ),
]
Limit = Annotated[int | None, typer.Option("--limit", help="Use the first N examples only (smoke runs).")]

# Where the work runs (featurize run, bench heads): this machine, or a Ray cluster (docs: distributed).
Engine = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local (this machine) or ray (a Ray cluster; needs the distributed extra). "
        "The results are the same.",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="With --engine ray: the cluster to use, auto or HOST:PORT (default: start Ray on this "
        "machine, on 127.0.0.1, and stop it afterwards).",
    ),
]
RayWorkers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="With --engine ray: workers per encoder, each a Ray actor that loads the model once "
        "(default: as many as the cluster's CPUs, or GPUs with --gpus-per-worker, allow).",
        min=1,
        show_default=False,
    ),
]
GpusPerWorker = Annotated[
    float,
    typer.Option(
        "--gpus-per-worker", help="With --engine ray: GPUs per worker (fractions share one).", min=0
    ),
]


# -- a chat model behind an OpenAI-compatible server (bench llm, featurize knowledge) ----------
BaseUrl = Annotated[
    str,
    typer.Option(
        "--base-url",
        help="OpenAI-compatible endpoint (…/v1), or 'local': start llama-cpp-python's server with "
        "SmolLM2-135M here for the run.",
    ),
]
ChatModel = Annotated[
    str, typer.Option("--model", help="Model name the server knows (default with 'local': its SmolLM2).")
]
ApiKeyEnv = Annotated[
    str,
    typer.Option("--api-key-env", help="Environment variable holding the API key (never written anywhere)."),
]
Concurrency = Annotated[int, typer.Option("--concurrency", help="Requests in flight at once.")]
RequestTimeout = Annotated[float, typer.Option("--timeout", help="Seconds per request.")]
Attempts = Annotated[
    int,
    typer.Option(
        "--attempts", help="HTTP attempts per request on 429/5xx/time-outs (exponential back-off).", min=1
    ),
]
ServerThreads = Annotated[
    int, typer.Option("--threads", help="CPU threads of the local server (0: all cores).", min=0)
]
