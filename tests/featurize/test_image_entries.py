"""Image cache entries and the featurize pipeline's vision and context steps.

A small deterministic stand-in encoder keeps these tests about the cache, not about a model;
the real encoders have their own tests (test_vision.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featurize.cache.image_features import ImageFeatures
from featurize.cache.store import FeatureStore
from featurize.cache.text_features import TextFeatures
from featurize.datasets import LoadOptions, load_dataset
from featurize.pipeline import RunPlan, run
from featurize.text.transformer import WordFeatureOptions
from featurize.vision import VISION_ENCODERS
from featurize.vision.encoder import VisionEncoder, VisionOptions

T15_DEV_SAMPLE = ["130", "201", "654", "660", "694"]


class ColourEncoder(VisionEncoder):
    """Mean colour of a 4x4 thumbnail: cheap, deterministic, sensitive to the pixels."""

    name = "colour-test"
    loads = 0

    def __init__(self, options: VisionOptions) -> None:
        self.options = options

    def identity(self) -> dict[str, object]:
        return {"encoder": self.name, **self.options.describe()}

    def load(self) -> None:
        ColourEncoder.loads += 1

    def encode(self, images: list[Image.Image]) -> dict[str, np.ndarray]:
        self.load()
        thumbs = np.stack([np.asarray(i.resize((4, 4)), dtype=np.float32) / 255 for i in images])
        out = {"pooled": thumbs.mean((1, 2))}
        if self.options.patches:
            out["patches"] = thumbs.reshape(len(images), 16, 3)
        return out


if "colour-test" not in VISION_ENCODERS:
    VISION_ENCODERS.register("colour-test")(lambda options, source: ColourEncoder(options))


@pytest.fixture
def images(tmp_path: Path, data_dir: Path) -> Path:
    """The five real T15 dev sample images, the last one truncated to half its bytes."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in T15_DEV_SAMPLE:
        shutil.copy(data_dir / "twitter_sample/twitter_2015/images/dev" / f"{name}.jpg", folder)
    broken = folder / "694.jpg"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    return folder


def test_image_entry_with_unreadable_image(images: Path, tmp_path: Path, capsys) -> None:
    from rich.console import Console

    data = load_dataset("t15", LoadOptions(images=images), ["dev"])
    store = FeatureStore(tmp_path / "cache")
    plan = RunPlan(text=[], vision=["colour-test"], vision_options=VisionOptions(patches=True))
    written = run(data, plan, store, Console(stderr=True))
    (path,) = written["vision:colour-test"]
    assert "694.jpg: cannot read image" in " ".join(capsys.readouterr().err.split())
    features = ImageFeatures.load(path)
    assert len(features.files) == 5 and features.metadata["n_unreadable"] == 1
    assert features.arrays["pooled"].shape == (4, 3) and features.arrays["patches"].shape == (64, 3)
    examples = data.splits["dev"].examples
    with_image = [i for i, e in enumerate(examples) if e.image_paths and e.image_paths[0]]
    assert len(with_image) == 5
    vectors = [features.example_vector(i) for i in with_image]
    assert sum(v is None for v in vectors) == 1  # the truncated one: text-only
    assert features.example_vector(next(i for i in range(1000) if i not in with_image)) is None
    good = next(i for i in with_image if "130" in examples[i].image_ids[0])
    expected = (
        np.asarray(Image.open(images / "130.jpg").convert("RGB").resize((4, 4)), np.float32).mean((0, 1))
        / 255
    )
    np.testing.assert_allclose(features.example_vector(good), expected, atol=1e-6)
    assert features.rows("patches", features.images_of(good)[0]).shape == (16, 3)


def test_image_entry_reused_and_keyed_by_image_bytes(images: Path, tmp_path: Path) -> None:
    from rich.console import Console

    store = FeatureStore(tmp_path / "cache")
    plan = RunPlan(text=[], vision=["colour-test"])
    data = load_dataset("t15", LoadOptions(images=images), ["dev"])
    first = run(data, plan, store, Console(stderr=True))["vision:colour-test"][0]
    loads = ColourEncoder.loads
    again = run(data, plan, store, Console(stderr=True))["vision:colour-test"][0]
    assert again == first and ColourEncoder.loads == loads  # found, nothing encoded
    Image.new("RGB", (20, 20), (255, 0, 0)).save(images / "130.jpg")
    data = load_dataset("t15", LoadOptions(images=images), ["dev"])
    changed = run(data, plan, store, Console(stderr=True))["vision:colour-test"][0]
    assert changed != first
    plan_patches = RunPlan(text=[], vision=["colour-test"], vision_options=VisionOptions(patches=True))
    assert run(data, plan_patches, store, Console(stderr=True))["vision:colour-test"][0] not in (
        first,
        changed,
    )


def test_no_images_found_skips_vision(tmp_path: Path, capsys) -> None:
    from rich.console import Console

    data = load_dataset("t15", LoadOptions(), ["dev"])
    written = run(
        data, RunPlan(text=[], vision=["colour-test"]), FeatureStore(tmp_path / "c"), Console(stderr=True)
    )
    assert written == {} and "no image of t15/dev was found" in capsys.readouterr().err


def test_caption_context_entry(tiny_bert: Path, tmp_path: Path) -> None:
    from rich.console import Console

    rows = [
        {"text": ["the", "new", "york", "city"], "label": ["O", "B-LOC", "I-LOC", "O"], "image": "1.jpg"},
        {"text": ["berlin"], "label": ["B-LOC"], "image": "2.jpg"},
        {"text": ["abc"], "label": ["O"], "image": "3.jpg"},
    ]
    data_file = tmp_path / "toy.jsonl"
    data_file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    captions = tmp_path / "captions.txt"
    captions.write_text("1.jpg :a city street at night\n2.jpg :a map of germany\n")
    data = load_dataset(str(data_file), LoadOptions(format="jsonl", captions=captions))
    plan = RunPlan(
        text=[f"hf:{tiny_bert}"],
        contexts=["captions"],
        word_options=WordFeatureOptions(layers="last", bf16=False),
    )
    written = run(data, plan, FeatureStore(tmp_path / "cache"), Console(stderr=True))
    plain_path, caption_path = written[f"text:hf:{tiny_bert}"]
    plain, with_caption = TextFeatures.load(plain_path), TextFeatures.load(caption_path)
    assert "+captions" in caption_path.name and with_caption.metadata["context"] == "captions"
    assert plain.features.shape == with_caption.features.shape == (6, 16)
    assert not np.allclose(plain.example(0)[2], with_caption.example(0)[2])
    np.testing.assert_allclose(plain.example(2)[2], with_caption.example(2)[2], atol=1e-6)  # no caption


def test_label_words_context_from_the_real_classifier(
    tiny_bert: Path, data_dir: Path, tmp_path: Path
) -> None:
    from rich.console import Console

    images = data_dir / "twitter_sample" / "twitter_2015" / "images"
    data = load_dataset("t15", LoadOptions(images=images), ["dev"])
    plan = RunPlan(text=[f"hf:{tiny_bert}"], contexts=["labels"], word_options=WordFeatureOptions(bf16=False))
    written = run(data, plan, FeatureStore(tmp_path / "cache"), Console(stderr=True))
    (labels_path,) = written["vision:labels"]  # built on the way: its words are the context
    plain_path, labels_context = written[f"text:hf:{tiny_bert}"]
    labels = ImageFeatures.load(labels_path)
    with_image = [i for i, e in enumerate(data.splits["dev"].examples) if e.image_paths and e.image_paths[0]]
    words = labels.label_words(with_image[0])
    assert len(words) == 5 and all(isinstance(w, str) and w for w in words)
    text = TextFeatures.load(labels_context)
    assert text.metadata["context"] == "labels"
    assert text.metadata["context_identity"]["examples_with_context"] == 5
    plain = TextFeatures.load(plain_path)
    assert not np.allclose(plain.example(with_image[0])[2], text.example(with_image[0])[2])
