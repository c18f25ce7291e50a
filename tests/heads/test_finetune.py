"""``bench finetune`` with tiny random encoders: the trainable path reproduces the cached
features, one step moves what it should and nothing else, and a saved run folder predicts
exactly what the trained model predicted (full fine-tuning, a LoRA adapter, a merged LoRA
model, an 8-bit base)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from finetune_runs import fine, save_tuned
from heads_data import IMAGE_MAP, image_ids
from rich.console import Console

from featurize.errors import ConfigError
from featurize.text.trainable import LoraSettings, TrainableWordFeatures
from featurize.text.transformer import TransformerWordEncoder, WordFeatureOptions
from featurize.weights import LocalFolder
from heads.experiment import RunSpec
from heads.finetune import LiveEncoders, build_model, evaluate_split
from heads.inputs import InputSpec
from heads.train_config import TrainConfig
from heads.trainer import fit

DATASET = "t17tiny"
SUBSET = {"train.txt": 24, "valid.txt": 12, "test.txt": 12}


@dataclass
class Tiny:
    cache: Path
    bert: str  # the --text names: hf:<folder>
    llama: str
    llama8: str


def _write_subset(source: Path, folder: Path) -> None:
    """The first tweets of each split, and every tweet whose photo is in the public sample."""
    folder.mkdir(parents=True)
    photos = image_ids()
    for name, first in SUBSET.items():
        blocks = [b for b in (source / name).read_text(encoding="utf-8").split("\n\n") if b.strip()]
        kept = [b for i, b in enumerate(blocks) if i < first or b.split("\n")[0][len("IMGID:") :] in photos]
        (folder / name).write_text("\n\n".join(kept) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Tiny:
    from tiny_models import save_tiny_bert, save_tiny_llama

    from featurize.cache.store import FeatureStore
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.pipeline import RunPlan
    from featurize.pipeline import run as featurize

    root = tmp_path_factory.mktemp("finetune")
    bert = save_tiny_bert(root / "bert", max_positions=64)
    llama = save_tiny_llama(root / "llama")
    llama8 = save_tiny_llama(root / "llama8", seed=1)
    folder = root / DATASET
    _write_subset(data_dir / "twitter2017", folder)
    captions = data_dir / "captions" / "blip2_twitter2017.txt"
    images = data_dir / "twitter_sample" / "twitter_2017" / "images"
    options = LoadOptions(format="umt", captions=captions, images=images, image_map=IMAGE_MAP)
    dataset = load_dataset(str(folder), options)
    store, quiet = FeatureStore(root / "cache"), Console(file=io.StringIO())
    fp32 = WordFeatureOptions(bf16=False)
    plan = RunPlan(text=[f"hf:{bert}"], vision=["cnn"], contexts=["captions"], word_options=fp32)
    featurize(dataset, plan, store, quiet)
    featurize(dataset, RunPlan(text=[f"hf:{llama}"], word_options=fp32), store, quiet)
    eight = WordFeatureOptions(bf16=False, weights_format="8bit")
    featurize(dataset, RunPlan(text=[f"hf:{llama8}"], word_options=eight), store, quiet)
    return Tiny(root / "cache", f"hf:{bert}", f"hf:{llama}", f"hf:{llama8}")


def spec(
    text: str,
    head: str = "bilstm-crf",
    context: str = "none",
    vision: str | None = None,
    modality: str | None = None,
) -> RunSpec:
    inputs = InputSpec(DATASET, text, vision, context=context)
    return RunSpec(head, inputs, modality, train=TrainConfig(seed=0, epochs=1, threads=1))


def train_end_to_end(model, extras, config: TrainConfig):  # noqa: ANN001, ANN201
    """The one trainer on the live-encoder task (what heads.finetune.run does)."""
    return fit(LiveEncoders(model, extras, config), config)


def _one_step(model, extras, lr: float = 1e-2) -> None:  # noqa: ANN001
    """One AdamW step on the first training batch (large rates, so every trained tensor moves)."""
    from heads.data import Batcher

    data = extras["data"]["train"]
    batcher = Batcher(data, model.head.tags, extras["vocab"], frozenset(extras["needs"] - {"text"}))
    batch = next(batcher.batches(8, torch.Generator().manual_seed(0)))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    model.loss(batch, data).backward()
    optimizer.step()


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


# --------------------------------------------------------------------------- trainable features


@pytest.mark.parametrize("pooling", ["first", "mean", "last"])
def test_trainable_features_equal_encode(tiny_bert: Path, pooling: str) -> None:
    """Eval mode gives what featurize caches: same subwords, windows, second segment, layers."""
    options = WordFeatureOptions(pooling=pooling, bf16=False, max_length=12, layers="last2")
    encoder = TransformerWordEncoder("tiny", LocalFolder(tiny_bert), options)
    sentences = [["New", "York", "City"], ["the", "berlin", "marathon", "in", "new", "york", "city", "!"] * 2]
    contexts = ["a city", None]
    expected = encoder.encode(sentences, None, contexts)
    live = TrainableWordFeatures(encoder).eval()
    with torch.no_grad():
        got = live(sentences, contexts)
    assert encoder.stats.windowed_examples  # the long sentence was read in windows
    for i, words in enumerate(sentences):
        np.testing.assert_allclose(got[i, : len(words)].numpy(), expected[i], rtol=1e-5, atol=1e-5)
        assert not got[i, len(words) :].any()


def test_full_fine_tuning_needs_float_weights(tiny: Tiny) -> None:
    with pytest.raises(ConfigError, match="needs fp32 weights"):
        build_model(spec(tiny.llama8), fine(method="full"), tiny.cache, None, lambda _m: None)


# --------------------------------------------------------------------------- what one step moves


@pytest.mark.parametrize("checkpointing", [False, True])
def test_one_step_of_full_fine_tuning_changes_the_encoder(tiny: Tiny, checkpointing: bool) -> None:
    config = fine(gradient_checkpointing=checkpointing)
    model, extras, _ = build_model(spec(tiny.bert), config, tiny.cache, None, lambda _m: None)
    assert model.text[0].model.is_activation_checkpointing == checkpointing
    assert model.text[0].method == "full"  # BERT family: full fine-tuning by default
    before = _params(model.text[0])
    _one_step(model, extras)
    after = _params(model.text[0])
    moved = [n for n in before if not torch.equal(before[n], after[n])]
    # every encoder tensor that reaches the loss moves (the pooler does not feed word features)
    assert len(moved) >= len([n for n in before if "pooler" not in n])


@pytest.mark.parametrize("which", ["llama", "llama8"])
def test_one_lora_step_changes_only_the_adapters(tiny: Tiny, which: str) -> None:
    text = getattr(tiny, which)
    model, extras, _ = build_model(spec(text), fine(), tiny.cache, None, lambda _m: None)
    live = model.text[0]
    assert live.method == "lora"  # a decoder: LoRA by default
    assert live.encoder.options.weights_format == ("8bit" if which == "llama8" else "fp32")
    before = {n: t.clone() for n, t in live.model.state_dict().items()}
    _one_step(model, extras)
    after = live.model.state_dict()
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and all("lora_" in n for n in moved), sorted(moved)[:5]
    assert any("lora_A" in n for n in moved) and any("lora_B" in n for n in moved)
    if which == "llama8":
        import bitsandbytes as bnb

        assert any(isinstance(m, bnb.nn.Linear8bitLt) for m in live.model.modules())


# --------------------------------------------------------------------------- save -> load


def _trained(tiny: Tiny, text: str, context: str = "none", **kwargs: object):  # noqa: ANN202
    model, extras, identity = build_model(
        spec(text, context=context), fine(**kwargs), tiny.cache, None, lambda _m: None
    )
    train_end_to_end(model, extras, fine(**kwargs))
    _one_step(model, extras)  # whatever early stopping kept, make sure the encoder moved
    return model, extras, identity


def _predicted(folder: Path, data, lora_weights: str = "adapter") -> list[list[str]]:  # noqa: ANN001
    from heads.families import load as Predictor
    from heads.input_files import PredictInput

    inputs = [
        PredictInput(list(words), caption=(data.contexts[i] if data.contexts else None), id=str(i))
        for i, words in enumerate(data.words)
    ]
    return [p.tags for p in Predictor(folder, lora_weights=lora_weights).predict(inputs)]


def test_fully_fine_tuned_model_predicts_the_same_after_reload(tiny: Tiny, tmp_path: Path) -> None:
    model, extras, identity = _trained(tiny, tiny.bert, context="captions")
    test = extras["data"]["test"]
    scores, expected = evaluate_split(model, test, extras["vocab"], extras["needs"], 64)
    folder = save_tuned(tmp_path / "run", model, extras, identity)
    assert (
        (folder / "encoders").is_dir() and not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    )
    assert _predicted(folder, test) == expected
    # the encoder really is the fine-tuned one: the base's features would give other scores
    base = TransformerWordEncoder("base", LocalFolder(Path(tiny.bert[3:])), WordFeatureOptions(bf16=False))
    tuned = model.text[0].encoder
    assert not np.allclose(
        base.encode([test.words[0]], None, [test.contexts[0]])[0],
        tuned.encode([test.words[0]], None, [test.contexts[0]])[0],
    )


@pytest.mark.parametrize("which", ["llama", "llama8"])
def test_lora_adapter_and_merged_model_predict_the_same_after_reload(
    tiny: Tiny, tmp_path: Path, which: str
) -> None:
    from heads import finetuned

    model, extras, identity = _trained(tiny, getattr(tiny, which))
    test = extras["data"]["test"]
    _, expected = evaluate_split(model, test, extras["vocab"], extras["needs"], 64)
    folder = save_tuned(tmp_path / "run", model, extras, identity, merge=True)
    adapter = next(folder.glob("adapters/*/adapter_model.safetensors"))
    assert adapter.stat().st_size < 200_000  # the adapter only, not the base
    assert _predicted(folder, test, "adapter") == expected
    # merged: the adapter folded into an fp32 base; equal to that merged model before saving
    merged = finetuned.merged_model(model.text[0])
    encoder = TransformerWordEncoder(
        "merged", LocalFolder(Path(getattr(tiny, which)[3:])), model.text[0].encoder.options
    )
    encoder.load()
    encoder._model = merged
    features = encoder.encode(test.words)
    reloaded = finetuned.text_encoder(
        folder,
        getattr(tiny, which),
        identity[f"text:{getattr(tiny, which)}"],
        {"kind": "lora", "merged": "encoders/" + next(folder.glob("encoders/*")).name},
        "cpu",
        "merged",
    )
    again = reloaded.encode(test.words)
    for a, b in zip(features, again):
        np.testing.assert_array_equal(a, b) if which == "llama8" else np.testing.assert_allclose(
            a, b, rtol=1e-5, atol=1e-5
        )
    tags_merged = _predicted(folder, test, "merged")
    assert tags_merged == _predicted(folder, test, "merged")  # stable
    if which == "llama":  # fp32 base: merging changes nothing but rounding
        assert tags_merged == expected
    # the merged weights hold the learning: they differ from the base's
    base = TransformerWordEncoder(
        "base", LocalFolder(Path(getattr(tiny, which)[3:])), WordFeatureOptions(bf16=False)
    )
    assert not np.allclose(base.encode(test.words[:1])[0], again[0], atol=1e-6)


def test_trained_vision_encoder_moves_and_predicts_the_same_after_reload(tiny: Tiny, tmp_path: Path) -> None:
    """--train-vision: the CNN under a linear fusion head gets gradients; a reload predicts alike."""
    from heads.families import load as Predictor
    from heads.input_files import PredictInput

    config = fine(train_vision=True)
    model, extras, identity = build_model(
        spec(tiny.bert, "linear", vision="cnn"), config, tiny.cache, None, print
    )
    assert model.vision is not None
    before = _params(model.vision)
    data = extras["data"]["train"]
    with_photo = [i for i, files in enumerate(data.image_files or []) if files]
    assert with_photo  # the subset holds tweets with their photo
    from heads.data import Batcher

    batcher = Batcher(data, model.head.tags, extras["vocab"], frozenset(extras["needs"] - {"text"}))
    batch = batcher.collate(with_photo[:4])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    model.loss(batch, data).backward()
    optimizer.step()
    after = _params(model.vision)
    assert sum(not torch.equal(before[n], after[n]) for n in before) > len(before) // 2
    test = extras["data"]["test"]
    _, expected = evaluate_split(model, test, extras["vocab"], extras["needs"], 64)
    folder = save_tuned(tmp_path / "run", model, extras, identity)
    assert (folder / "encoders" / "vision-cnn.safetensors").is_file()
    inputs = [
        PredictInput(list(words), [Path(f) for f in (test.image_files or [])[i]], id=str(i))
        for i, words in enumerate(test.words)
    ]
    assert [p.tags for p in Predictor(folder).predict(inputs)] == expected


def test_train_vision_needs_a_head_that_reads_image_vectors(tiny: Tiny) -> None:
    with pytest.raises(ConfigError, match="no image"):
        build_model(spec(tiny.bert), fine(train_vision=True), tiny.cache, None, print)


def test_cli_fine_tunes_reports_and_predicts(
    tiny: Tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import bench.cli
    import heads.cli

    runs = tmp_path / "runs"
    argv = [
        "finetune", "--dataset", DATASET, "--head", "bilstm-crf", "--text", tiny.bert, "--context", "captions",
        "--epochs", "2", "--batch-size", "8", "--runs", str(runs), "--cache-dir", str(tiny.cache),
    ]  # fmt: skip
    code, out, err = run_cli(bench.cli.main, argv, capsys)
    assert code == 0, err
    assert "frozen features" in out and "fine-tuned (full)" in out
    lines = [json.loads(x) for x in (runs / "runs.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    tuned = next(x for x in lines if x["cell"]["train"].get("fine_tune"))
    assert tuned["record"]["history"][0]["epoch"] == 0  # the frozen head's dev score comes first
    assert (runs / "report" / "finetune.md").is_file() and (runs / "report" / "finetune.csv").is_file()
    code, out, err = run_cli(bench.cli.main, argv, capsys)  # the same command again trains nothing
    assert code == 0 and "not trained again" in out
    assert len((runs / "runs.jsonl").read_text().splitlines()) == 2
    code, out, err = run_cli(bench.cli.main, [*argv, "--first-seed", "1"], capsys)  # seed 1 only, same store
    assert code == 0, err
    assert "seed 0" not in out and "seed 1: fine-tuned dev" in out
    seeds = [json.loads(x)["cell"]["seed"] for x in (runs / "runs.jsonl").read_text().splitlines()]
    assert sorted(seeds) == [0, 0, 1, 1]
    assert "| 0, 1 |" in (runs / "report" / "finetune.md").read_text()  # the report groups both seeds
    from heads.experiment import evaluate_saved

    _, scores = evaluate_saved(Path(tuned["model"]), tiny.cache, ("dev", "test"))
    for split in ("dev", "test"):  # heads eval scores with the run's own encoders, as bench finetune did
        assert scores[split]["entity_f1"] == tuned["record"]["metrics"][split]["entity_f1"]
        assert scores[split]["token_macro_f1"] == tuned["record"]["metrics"][split]["token_macro_f1"]
    predict = [
        "predict",
        "--model",
        tuned["model"],
        "--text",
        "the new york city marathon",
        "--caption",
        "a city",
    ]
    code, out, err = run_cli(heads.cli.main, [*predict, "--format", "conll"], capsys)
    assert code == 0, err
    assert len(out.strip().splitlines()) == 5


class Killed(BaseException):
    """Stands for the process being killed (not an error the command would report and go on)."""


def test_cli_goes_on_from_the_last_epoch_after_a_kill(
    tiny: Tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed in its second epoch, the same command goes on after the first and ends as the
    uninterrupted run; the state is gone once the model is saved."""
    import json

    import bench.cli
    from heads.finetune import LiveEncoders

    def argv(runs: Path) -> list[str]:
        return [
            "finetune", "--dataset", DATASET, "--head", "bilstm-crf", "--text", tiny.bert,
            "--epochs", "2", "--batch-size", "8", "--runs", str(runs), "--cache-dir", str(tiny.cache),
        ]  # fmt: skip

    real, calls = LiveEncoders.loss, {"n": 0}

    def counting(self, batch, weights):  # noqa: ANN001, ANN202  (one call per training batch)
        calls["n"] += 1
        if calls["n"] == calls.get("kill_at"):
            raise Killed
        return real(self, batch, weights)

    monkeypatch.setattr(LiveEncoders, "loss", counting)
    code, _out, err = run_cli(bench.cli.main, argv(tmp_path / "whole"), capsys)
    assert code == 0, err
    calls["kill_at"], calls["n"] = calls["n"] // 2 + 2, 0  # the second batch of epoch 2
    runs = tmp_path / "killed"
    with pytest.raises(Killed):
        run_cli(bench.cli.main, argv(runs), capsys)
    capsys.readouterr()
    assert list((runs / "paused").iterdir())  # the state after epoch 1
    code, out, err = run_cli(bench.cli.main, argv(runs), capsys)
    assert code == 0, err
    assert "resumed after epoch 1" in out
    assert not list((runs / "paused").iterdir())

    def tuned(store: Path) -> dict:
        lines = [json.loads(x) for x in (store / "runs.jsonl").read_text().splitlines()]
        return next(x["record"] for x in lines if x["cell"]["train"].get("fine_tune"))

    a, b = tuned(tmp_path / "whole"), tuned(runs)
    assert b["resumed_after"] == 1 and a["resumed_after"] is None
    assert a["metrics"] == b["metrics"] and a["best_epoch"] == b["best_epoch"]
    assert [r["train_loss"] for r in a["history"][1:]] == [r["train_loss"] for r in b["history"][1:]]


def test_cli_refuses_bad_options_with_one_line(
    tiny: Tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import bench.cli

    base = ["finetune", "--dataset", DATASET, "--runs", str(tmp_path), "--cache-dir", str(tiny.cache)]
    named = [*base, "--head", "bilstm-crf", "--text", tiny.bert]
    for argv, says in (
        ([*named, "--method", "adapters"], "--method"),
        ([*base, "--best", "--winners", str(tmp_path / "none.json")], "none.json"),
        ([*named, "--lr", "encoder=1"], "unknown component"),
        ([*named, "--train-vision"], "--train-vision"),
    ):
        code, _out, err = run_cli(bench.cli.main, argv, capsys)
        assert code == 2 and says in err, (argv, err)


def test_lora_settings_are_checked() -> None:
    with pytest.raises(ConfigError):
        LoraSettings(r=0)


def test_lora_base_can_be_held_in_another_format(tiny: Tiny) -> None:
    """--weights-format bf16 on features cached from fp32 weights: the base is checked against
    the cached identity in everything but its format."""
    model, extras, _ = build_model(spec(tiny.llama), fine(weights_format="bf16"), tiny.cache, None, print)
    live = model.text[0]
    assert live.method == "lora" and live.encoder.options.weights_format == "bf16"
    assert (
        next(p for n, p in live.model.named_parameters() if "q_proj.base_layer" in n).dtype == torch.bfloat16
    )
    _one_step(model, extras)
