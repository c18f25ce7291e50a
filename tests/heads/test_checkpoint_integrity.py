"""Saved models refuse damage with one line naming the file: the sha256 of the weights (and of a
fine-tuned run's encoder files, and of the config) recorded at save and checked at load;
flipped bytes, a damaged safetensors header, a pickle under the weights' name, a truncated
file; checkpoints saved before checksums still load; `featurize verify` lists them all. A toy
dataset and a tiny random BERT: no shared data."""

from __future__ import annotations

import io
import json
import pickle
import shutil
from pathlib import Path

import pytest
from cli_runner import run_cli
from rich.console import Console
from toy_data import write_jsonl

import heads
import heads.cli
from featurize.cli import main as featurize_main
from featurize.errors import IntegrityError, MnerError
from featurize.integrity import CHECKSUMS, files_under, sha256_file
from heads import checkpoint, finetuned

WEIGHTS = checkpoint.WEIGHTS


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> dict[str, Path]:
    """toy.jsonl featurized with the tiny BERT (60/20/20), a linear head and the crf head."""
    from featurize.cache.store import FeatureStore
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.pipeline import RunPlan
    from featurize.pipeline import run as run_pipeline
    from featurize.text.transformer import WordFeatureOptions
    from heads.families import family_of_head
    from heads.inputs import InputSpec

    root = tmp_path_factory.mktemp("checkpoints")
    data = write_jsonl(root / "toy.jsonl", n=40)
    dataset = load_dataset(str(data), LoadOptions(format="jsonl", split_fractions=(0.6, 0.2, 0.2)))
    cache = root / "cache"
    text = f"hf:{tiny_bert}"
    plan = RunPlan(text=[text], word_options=WordFeatureOptions(bf16=False))
    run_pipeline(dataset, plan, FeatureStore(cache), Console(file=io.StringIO()))
    config = heads.TrainConfig(epochs=2, threads=1)
    spec = heads.RunSpec("linear", InputSpec(dataset.name, text), modality="text", train=config)
    heads.train(spec, cache, root / "linear")
    crf = heads.RunSpec("crf", InputSpec(dataset.name, None), options={"max_iterations": "20"}, train=config)
    family_of_head("crf").train(crf, cache, root / "crf", quiet=True)
    return {"cache": cache, "linear": root / "linear", "crf": root / "crf"}


@pytest.fixture
def runs(trained: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the trained run folders, free to damage."""
    for name in ("linear", "crf"):
        shutil.copytree(trained[name], tmp_path / "runs" / name)
    return tmp_path / "runs"


def evaluate(capsys, folder: Path, cache: Path) -> tuple[int, str, str]:
    return run_cli(heads.cli.main, ["eval", "--model", str(folder), "--cache-dir", str(cache)], capsys)


def refused(code: int, err: str) -> str:
    """Exit 2 with exactly one line, the error, and no traceback."""
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


def without_checksums(folder: Path) -> Path:
    """The folder as a version before checksums saved it."""
    path = folder / checkpoint.CONFIG
    config = json.loads(path.read_text())
    del config[CHECKSUMS]
    path.write_text(json.dumps(config, indent=1))
    return folder


def flip_weights(path: Path, n: int = 64) -> None:
    """Flip n bytes of the tensor data (after the 8-byte length and the JSON header)."""
    raw = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")
    for i in range(n):
        raw[start + (i * 13) % (len(raw) - start)] ^= 0x5A
    path.write_bytes(bytes(raw))


def damage_header(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[:8] = (1 << 40).to_bytes(8, "little")  # a header "a terabyte long"
    path.write_bytes(bytes(raw))


class Hostile:
    """Unpickling this would create the marker file: proof of whether anything was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (open, (str(self.marker), "w"))


# --------------------------------------------------------------------------- torch heads


def test_checkpoint_records_and_checks_its_checksums(trained: dict[str, Path]) -> None:
    folder = trained["linear"]
    config = json.loads((folder / checkpoint.CONFIG).read_text())
    record = config[CHECKSUMS]
    assert record["algorithm"] == "sha256" and record["files"] == {WEIGHTS: sha256_file(folder / WEIGHTS)}
    model, loaded = checkpoint.load(folder)
    assert loaded[CHECKSUMS] == record and model.tags


def test_flipped_bytes_in_the_weights_heads_eval_refuses_naming_the_file(
    capsys, runs: Path, trained: dict[str, Path]
) -> None:
    flip_weights(runs / "linear" / WEIGHTS)
    line = refused(*evaluate(capsys, runs / "linear", trained["cache"])[::2])
    assert f"{runs / 'linear' / WEIGHTS} is damaged" in line and "sha256" in line


@pytest.mark.parametrize("old", [False, True], ids=["with-checksums", "saved-before-checksums"])
def test_damaged_header_is_one_line(capsys, runs: Path, trained: dict[str, Path], old: bool) -> None:
    folder = without_checksums(runs / "linear") if old else runs / "linear"
    damage_header(folder / WEIGHTS)
    line = refused(*evaluate(capsys, folder, trained["cache"])[::2])
    assert f"{folder / WEIGHTS} is damaged" in line
    assert ("header too large" if old else "sha256") in line


@pytest.mark.parametrize("old", [False, True], ids=["with-checksums", "saved-before-checksums"])
def test_a_pickle_named_model_safetensors_is_never_unpickled(
    capsys, runs: Path, trained: dict[str, Path], tmp_path: Path, old: bool
) -> None:
    import torch

    folder = without_checksums(runs / "linear") if old else runs / "linear"
    marker = tmp_path / "unpickled"
    torch.save({"weight": Hostile(marker)}, folder / WEIGHTS)
    line = refused(*evaluate(capsys, folder, trained["cache"])[::2])
    assert f"{folder / WEIGHTS} is damaged" in line and not marker.exists()
    (folder / WEIGHTS).write_bytes(pickle.dumps(Hostile(marker)))  # a bare pickle, too
    refused(*evaluate(capsys, folder, trained["cache"])[::2])
    assert not marker.exists()


def test_checkpoint_saved_before_checksums_loads_as_before(
    capsys, runs: Path, trained: dict[str, Path], tmp_path: Path
) -> None:
    scores = []
    for folder in (trained["linear"], without_checksums(runs / "linear")):
        argv = ["eval", "--model", str(folder), "--cache-dir", str(trained["cache"])]
        code, _, err = run_cli(heads.cli.main, [*argv, "--json", str(tmp_path / "scores.json")], capsys)
        assert code == 0 and not err.strip()  # silently: `featurize verify` is where it shows
        scores.append(json.loads((tmp_path / "scores.json").read_text()))
    assert scores[0] == scores[1]


def test_an_edited_config_is_refused_naming_it(runs: Path) -> None:
    path = runs / "linear" / checkpoint.CONFIG
    config = json.loads(path.read_text())
    config["tags"] = list(reversed(config["tags"]))  # still valid JSON, still the right shapes
    path.write_text(json.dumps(config))
    with pytest.raises(IntegrityError, match="config.json is damaged .its content differs"):
        checkpoint.load(runs / "linear")


@pytest.mark.parametrize("old", [False, True], ids=["with-checksums", "saved-before-checksums"])
def test_any_damage_to_the_weights_is_a_toolkit_error(runs: Path, old: bool) -> None:
    folder = without_checksums(runs / "linear") if old else runs / "linear"
    good = (folder / WEIGHTS).read_bytes()
    header = 8 + int.from_bytes(good[:8], "little")
    damaged = [
        b"",
        good[:4],
        good[:8],
        good[: header // 2],
        good[:header],
        good[: (header + len(good)) // 2],
        good[:8] + b"[" + good[9:],  # the header's JSON broken
        bytes(range(256)) * 4,
    ]
    if not old:
        damaged.append(good + b"trailing")  # harmless to a reader; caught by the checksum
    for raw in damaged:
        (folder / WEIGHTS).write_bytes(raw)
        with pytest.raises(MnerError, match=WEIGHTS):
            checkpoint.load(folder)


# --------------------------------------------------------------------------- crfsuite


def test_crfsuite_tagger_records_and_checks_its_checksums(
    capsys, runs: Path, trained: dict[str, Path]
) -> None:
    from heads.crf_suite import MODEL

    config = json.loads((trained["crf"] / "config.json").read_text())
    assert MODEL in config[CHECKSUMS]["files"]
    assert evaluate(capsys, trained["crf"], trained["cache"])[0] == 0
    raw = bytearray((runs / "crf" / MODEL).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (runs / "crf" / MODEL).write_bytes(bytes(raw))
    line = refused(*evaluate(capsys, runs / "crf", trained["cache"])[::2])
    assert f"{runs / 'crf' / MODEL} is damaged" in line
    (runs / "crf" / MODEL).write_bytes((trained["crf"] / MODEL).read_bytes())
    code, _, err = evaluate(capsys, without_checksums(runs / "crf"), trained["cache"])
    assert code == 0, err


# --------------------------------------------------------------------------- fine-tuned run folders


def fine_tuned_folder(runs: Path, tiny_bert: Path) -> tuple[Path, dict]:
    """A run folder laid out as heads.finetuned saves one (the head, a fully fine-tuned encoder
    folder beside it), written through the same checkpoint.save call."""
    folder = runs / "tuned"
    model, config = checkpoint.load(runs / "linear")
    shutil.copytree(tiny_bert, folder / "encoders" / "text-tiny")
    name = str(config["inputs"]["text"])
    info = {"text": {name: {"kind": "full", "folder": "encoders/text-tiny"}}, "vision": None}
    kept = {k: v for k, v in config.items() if k not in (CHECKSUMS, finetuned.KEY)}
    checkpoint.save(
        folder, model, kept | {finetuned.KEY: info}, files=files_under(folder, "encoders", "adapters")
    )
    return folder, info["text"][name] | {"name": name}


def test_fine_tuned_run_checks_its_encoder_files(capsys, runs: Path, tiny_bert: Path) -> None:
    folder, entry = fine_tuned_folder(runs, tiny_bert)
    recorded = json.loads((folder / checkpoint.CONFIG).read_text())[CHECKSUMS]["files"]
    assert "encoders/text-tiny/model.safetensors" in recorded and "encoders/text-tiny/vocab.txt" in recorded
    encoder = finetuned.text_encoder(folder, entry["name"], {}, entry, "cpu")
    assert encoder.weights.folder() == folder / "encoders" / "text-tiny"
    code, out, _ = run_cli(featurize_main, ["verify", "--no-cache", str(runs)], capsys)
    assert code == 0 and "fine-tuned run" in out and "3 checked: 3 ok" in " ".join(out.split())
    flip_weights(folder / "encoders" / "text-tiny" / "model.safetensors")
    with pytest.raises(IntegrityError, match="text-tiny/model.safetensors is damaged .its sha256"):
        finetuned.text_encoder(folder, entry["name"], {}, entry, "cpu")
    code, out, err = run_cli(featurize_main, ["verify", "--no-cache", str(runs)], capsys)
    assert code == 2 and "encoders/text-tiny/model.safetensors: its sha256" in " ".join(out.split())


def test_fine_tuned_run_saved_before_checksums_gets_its_headers_checked(runs: Path, tiny_bert: Path) -> None:
    folder, entry = fine_tuned_folder(runs, tiny_bert)
    without_checksums(folder)
    finetuned.verify_part(folder, "encoders/text-tiny")  # readable: fine
    damage_header(folder / "encoders" / "text-tiny" / "model.safetensors")
    with pytest.raises(IntegrityError, match="not a readable safetensors file"):
        finetuned.text_encoder(folder, entry["name"], {}, entry, "cpu")


# --------------------------------------------------------------------------- featurize verify


def test_featurize_verify_lists_every_saved_model(capsys, runs: Path) -> None:
    from featurize.verify import MODEL_FORMATS
    from heads import crf_suite

    assert MODEL_FORMATS == (checkpoint.FORMAT, crf_suite.FORMAT)  # featurize knows them by name only
    shutil.copytree(runs / "linear", runs / "old")
    without_checksums(runs / "old")
    code, out, _ = run_cli(featurize_main, ["verify", "--no-cache", str(runs)], capsys)
    assert code == 0 and "3 checked: 2 ok, 1 unverified" in " ".join(out.split())
    assert "crfsuite tagger" in out and "unverified-old" in out
    flip_weights(runs / "linear" / WEIGHTS)
    code, out, err = run_cli(featurize_main, ["verify", "--no-cache", str(runs)], capsys)
    assert code == 2 and "1 damaged" in out
    assert f"damaged: {runs / 'linear'} ({WEIGHTS}: its sha256" in " ".join(err.split())
