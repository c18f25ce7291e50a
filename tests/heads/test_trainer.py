"""The one trainer (heads.trainer.fit) and its one configuration type: schedules, accumulation,
early stopping, reproducibility, and run-store keys that survive the redesign. Synthetic
features: no shared data, no encoder."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from featurize.errors import ConfigError
from heads.data import Batcher, SplitData
from heads.tagger import HEADS, Dims, hyper_from
from heads.train_config import EncoderTraining, TrainConfig, finetune_config
from heads.trainer import TIMING_KEYS, CachedFeatures, Progress, fit, optimizer_steps

TAGS = ["O", "B-LOC", "I-LOC"]


def split(n: int, seed: int) -> SplitData:
    """Words whose 8-d feature says their tag (plus noise): a head learns it in a few epochs."""
    rng = np.random.default_rng(seed)
    words, tags, feats = [], [], []
    for _ in range(n):
        length = int(rng.integers(2, 7))
        t = [str(rng.choice(TAGS, p=[0.6, 0.3, 0.1])) for _ in range(length)]
        t = [("B-LOC" if x == "I-LOC" and (i == 0 or t[i - 1] == "O") else x) for i, x in enumerate(t)]
        words.append([f"w{i}" for i in range(length)])
        tags.append(t)
        for x in t:
            f = rng.normal(0, 0.3, 8)
            f[TAGS.index(x)] += 2.0
            feats.append(f)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(w) for w in words], out=offsets[1:])
    return SplitData("s", words, tags, [str(i) for i in range(n)], np.array(feats, dtype=np.float32), offsets)


def task(seed: int = 0, n_train: int = 60):
    torch.manual_seed(seed)
    cls = HEADS.get("bilstm-crf")
    model = cls(TAGS, Dims(text=8), hyper_from(cls.Hyper, {"proj": "8", "hidden": "8"}))
    return CachedFeatures(model, Batcher(split(n_train, 1), TAGS), Batcher(split(30, 2), TAGS))


def rates_during(config: TrainConfig, n_train: int = 60) -> list[float]:
    """The learning rate after every optimizer step of a run."""
    t = task(n_train=n_train)
    seen: list[float] = []
    optimizer_of = {}

    real = torch.optim.AdamW

    class Recording(real):  # type: ignore[misc,valid-type]
        def __init__(self, *a, **k) -> None:  # noqa: ANN002, ANN003
            super().__init__(*a, **k)
            optimizer_of["o"] = self

    torch.optim.AdamW = Recording  # type: ignore[misc]
    try:
        fit(t, config, Progress(on_step=lambda _s, _l: seen.append(optimizer_of["o"].param_groups[0]["lr"])))
    finally:
        torch.optim.AdamW = real  # type: ignore[misc]
    return seen


def test_same_seed_same_weights_and_history() -> None:
    config = TrainConfig(epochs=3, batch_size=8)
    a, b = task(), task()
    ra, rb = fit(a, config), fit(b, config)
    for (name, x), y in zip(a.head.state_dict().items(), b.head.state_dict().values()):
        assert torch.equal(x, y), name
    strip = [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in ra.history]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rb.history]


def test_it_learns_and_keeps_the_best_dev_epoch() -> None:
    fast = {c: 1e-2 for c in ("text", "fusion", "inner_lstm", "dense")}
    result = fit(task(), TrainConfig(epochs=8, batch_size=8, patience=8, lr=fast))
    best = max(row["dev_entity_f1"] for row in result.history)
    assert best > result.history[0]["dev_entity_f1"] and result.best_dev["entity_f1"] == best
    assert result.history[result.best_epoch - 1]["dev_entity_f1"] == best


def test_patience_stops_and_says_why() -> None:
    result = fit(
        task(),
        TrainConfig(
            epochs=40,
            batch_size=8,
            patience=1,
            lr=dict.fromkeys(("text", "vision", "fusion", "inner_lstm", "crf", "dense"), 0.0),
        ),
    )
    assert result.stopped_early and result.epochs_run == 2 and "no better dev" in result.stop_reason


def test_warmup_then_linear_decay() -> None:
    config = TrainConfig(epochs=4, batch_size=8, scheduler="linear", warmup=0.25, lr={"dense": 1e-3})
    per_epoch = -(-60 // 8)
    rates = rates_during(config)
    total = per_epoch * 4
    assert len(rates) == total == optimizer_steps(60, config)
    warm = round(0.25 * total)
    # step k runs at factor(k): (k + 1) / warm while warming up; recorded after the step
    assert all(a < b for a, b in zip(rates[: warm - 2], rates[1 : warm - 1]))  # rising
    assert rates[warm - 2] == pytest.approx(1e-3)  # the peak is the configured rate
    assert all(a >= b for a, b in zip(rates[warm:], rates[warm + 1 :]))  # then falling
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_plateau_halving_survives_a_warmup() -> None:
    """After its warm-up, the plateau schedule's halving is not overwritten step by step."""
    frozen = {"dense": 1e-3, "inner_lstm": 0.0, "fusion": 0.0, "crf": 0.0, "text": 0.0}
    config = TrainConfig(epochs=8, batch_size=8, scheduler="plateau", warmup=0.1, patience=8, lr=frozen)
    rates = rates_during(config)
    assert min(rates[len(rates) // 2 :]) < 1e-3  # a flat dev score halved the rate and it stayed


def test_accumulation_counts_optimizer_steps() -> None:
    config = TrainConfig(epochs=2, batch_size=8, accumulate=3)
    rates = rates_during(config)
    assert len(rates) == optimizer_steps(60, config) == 2 * 3  # 8 micro-batches an epoch, 3 per step


def test_one_config_type_with_checked_values() -> None:
    ft = finetune_config(EncoderTraining(method="lora"))
    assert isinstance(ft, TrainConfig) and ft.encoders is not None
    assert ft.learning_rates(method="lora")["text"] == 2e-5  # thesis Llama table
    assert ft.learning_rates(method="full")["text"] == 8e-6  # thesis BERT table
    assert TrainConfig().learning_rates({"dense": 5e-3})["dense"] == 5e-3  # a head's own need, cached preset
    for bad in (
        {"scheduler": "sometimes"},
        {"warmup": 1.0},
        {"lr": {"nope": 1.0}},
        {"accumulate": 0},
        {"warmup": 0.1, "scheduler": "cosine"},
    ):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        EncoderTraining(method="half")


def test_run_store_keys_survive_the_redesign() -> None:
    """Grid cells and fine-tuned lines keep the keys stores written before this config type had
    (hashes computed with the code of 7ee5fa3): an existing store is found again, not re-run."""
    from bench.finetune import legacy_settings
    from bench.finetune_bench import tuned_key
    from bench.grid import GRID_TRAIN, Cell

    train = GRID_TRAIN.key_settings()
    assert Cell("t17", "cwi", "text", "minilm", None, "none", 0, train).key == "bd01aa3f12ab303d"
    assert Cell("t15", "crf", "text", None, None, "none", 0, train).key == "c3c7d7a84aa06fe6"
    cell = Cell("t17", "cwi", "text", "mpnet", None, "captions", 0, train)
    assert tuned_key(cell, legacy_settings(finetune_config().with_seed(0))) == "2a822904ca110c47"
    # a new setting away from its default is part of the key
    assert replace(GRID_TRAIN, accumulate=2).key_settings() != train


def _curve(result) -> list[dict]:  # noqa: ANN001
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in result.history]


@pytest.mark.parametrize(
    "settings",
    [
        {"scheduler": "linear", "warmup": 0.2},
        {"scheduler": "plateau", "precision": "bf16"},
        {"scheduler": "cosine"},
    ],
)
def test_a_paused_run_goes_on_exactly_as_the_uninterrupted_one(tmp_path, settings: dict) -> None:  # noqa: ANN001
    """bench heads --halving resumes survivors: pause after epoch 2 and 4, go on to the end."""
    config = TrainConfig(epochs=6, batch_size=8, patience=6, **settings)
    whole = task()
    expected = fit(whole, config)
    state = tmp_path / "paused"
    for rung in (2, 4):
        part = fit(task(), replace(config, stop_after=rung, pause_state=str(state)))
        assert part.halted_at == rung and (state / "state.json").exists()
    notes: list[str] = []
    resumed = task(seed=7)  # other initial weights: the state replaces them
    result = fit(resumed, replace(config, pause_state=str(state)), Progress(on_note=notes.append))
    assert any("resumed after epoch 4" in n for n in notes)
    assert _curve(result) == _curve(expected) and result.best_epoch == expected.best_epoch
    assert result.optimizer_steps == expected.optimizer_steps
    for (name, x), y in zip(resumed.head.state_dict().items(), whole.head.state_dict().values()):
        assert torch.equal(x, y), name
    assert not state.exists()  # the run finished: its paused state is gone


def test_an_altered_or_foreign_paused_state_is_not_read(tmp_path) -> None:  # noqa: ANN001
    config = TrainConfig(epochs=3, batch_size=8, patience=3)
    expected = fit(task(), config)
    state = tmp_path / "paused"
    fit(task(), replace(config, stop_after=1, pause_state=str(state)))
    raw = bytearray((state / "state.safetensors").read_bytes())
    raw[-1] ^= 1
    (state / "state.safetensors").write_bytes(bytes(raw))
    notes: list[str] = []
    result = fit(task(), replace(config, pause_state=str(state)), Progress(on_note=notes.append))
    assert not any("resumed" in n for n in notes)  # trained from epoch 1: the same run, later
    assert _curve(result) == _curve(expected)
    fit(task(), replace(config, stop_after=1, pause_state=str(state)))
    other = replace(config, seed=1, pause_state=str(state))  # another seed's run: not this state
    assert _curve(fit(task(), other)) == _curve(fit(task(), replace(config, seed=1)))


@pytest.mark.parametrize("epochs", [6, 3])
def test_the_budget_stops_between_epochs_and_says_when_it_cuts_the_decay(
    epochs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--max-minutes: another epoch starts only if it ends inside the budget; after the first
    epoch a note says when the budget will stop a linear decay early, and which --epochs fits.
    The clock is the run's own steps (10 s each, 8 steps an epoch), so the test is not timed."""
    import heads.trainer

    clock = {"now": 0.0}
    monkeypatch.setattr(heads.trainer.time, "perf_counter", lambda: clock["now"])
    notes: list[str] = []

    def step(_done: int, _loss: float) -> None:
        clock["now"] += 10.0

    config = TrainConfig(epochs=epochs, batch_size=8, scheduler="linear", max_minutes=4)
    result = fit(task(), config, Progress(on_step=step, on_note=notes.append))
    assert result.epochs_run == 3  # 80 s an epoch: a fourth would end at 320 s > 240 s
    if epochs == 6:
        assert result.stop_reason == "another epoch would pass the 4-minute budget"
        assert any(
            "about 3 of 6 epochs fit" in n and "50 % of its peak" in n and "--epochs 3" in n for n in notes
        )
    else:
        assert not any("epochs fit" in n for n in notes)


class Killed(Exception):
    """Stands for the process being killed mid-epoch (a session's end, a pre-empted node)."""


def test_a_run_killed_mid_epoch_goes_on_from_its_last_epoch(tmp_path) -> None:  # noqa: ANN001
    """--state-every-epoch (bench finetune): killed in epoch 3, the run goes on after epoch 2 and
    ends exactly as the uninterrupted one; the state stays for the caller to drop once saved."""
    config = TrainConfig(epochs=5, batch_size=8, patience=5, scheduler="linear", warmup=0.2)
    whole = task()
    expected = fit(whole, config)
    state = tmp_path / "state"
    kept = replace(config, pause_state=str(state), state_every_epoch=True)
    per_epoch = optimizer_steps(60, config) // config.epochs

    def kill_in_epoch_3(done: int, _loss: float) -> None:
        if done > 2 * per_epoch:
            raise Killed

    with pytest.raises(Killed):
        fit(task(), kept, Progress(on_step=kill_in_epoch_3))
    notes: list[str] = []
    resumed = task(seed=7)
    result = fit(resumed, kept, Progress(on_note=notes.append))
    assert any("resumed after epoch 2" in n for n in notes)
    assert _curve(result) == _curve(expected) and result.resumed_after == 2
    for (name, x), y in zip(resumed.head.state_dict().items(), whole.head.state_dict().values()):
        assert torch.equal(x, y), name
    assert (state / "state.json").exists()  # kept: the caller drops it once the model is saved
    # killed after its last epoch (while the model was being scored or saved): nothing trains again
    again = task(seed=9)
    notes.clear()
    last = fit(again, kept, Progress(on_note=notes.append, on_step=kill_in_epoch_3))
    assert any("resumed after epoch 5" in n for n in notes) and _curve(last) == _curve(expected)
    for x, y in zip(again.head.state_dict().values(), whole.head.state_dict().values()):
        assert torch.equal(x, y)


def test_a_run_that_ended_early_does_not_train_on_when_resumed(tmp_path) -> None:  # noqa: ANN001
    """A state written after a patience (or budget) stop ends the resumed run at once."""
    config = TrainConfig(epochs=30, batch_size=8, patience=1, lr={"dense": 1.0})
    expected = fit(task(), config)
    assert expected.stop_reason.startswith("no better dev") and expected.epochs_run < 30
    kept = replace(config, pause_state=str(tmp_path / "state"), state_every_epoch=True)
    fit(task(), kept)
    notes: list[str] = []
    result = fit(task(seed=3), kept, Progress(on_note=notes.append))
    assert any(f"(it had ended: {expected.stop_reason})" in n for n in notes)
    assert result.epochs_run == expected.epochs_run and result.best_epoch == expected.best_epoch
    assert _curve(result) == _curve(expected)
