"""``clip=<open_clip model>:<checkpoint>``: the image tower of an open_clip model, with the
text tower at hand (``encode_text``) for image-text similarity.

No CLIP weights can be had on these machines, so none are bundled: the user names the
architecture (``open_clip.list_models()``, e.g. ``ViT-B-32``) and a local checkpoint file
(.safetensors, or a tensors-only torch file; open_clip's own loader with weights_only=True).
``pooled`` is the projected image embedding, not L2-normalised (cosine similarity normalises);
``patches`` are the vision transformer's output tokens without the class token (width-d,
before the projection).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from featurize.errors import ConfigError
from featurize.vision import VISION_ENCODERS
from featurize.vision.checkpoints import checkpoint_path, file_identity
from featurize.vision.encoder import VisionOptions
from featurize.vision.torch_encoder import TorchVisionEncoder


def preprocess_cfg(model_name: str) -> dict[str, Any]:
    """The eval transform open_clip sets for ``model_name`` with a checkpoint file (no tag):
    its defaults, the model config's ``preprocess_cfg``, and the tower's image size."""
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ConfigError(f"open_clip has no model {model_name!r}; see open_clip.list_models()")
    cfg = merge_preprocess_dict(PreprocessCfg(), config.get("preprocess_cfg", {}))
    size = config.get("vision_cfg", {}).get("image_size", cfg["size"])
    cfg["size"] = list(size) if isinstance(size, (list, tuple)) else int(size)
    cfg["mean"], cfg["std"] = list(cfg["mean"]), list(cfg["std"])
    return cfg


class ClipEncoder(TorchVisionEncoder):
    def __init__(self, options: VisionOptions, model_name: str, path: Path, name: str = "clip") -> None:
        super().__init__(name, options)
        self.model_name = model_name
        self.path = path
        self._transform: Any = None
        self._tokenizer: Any = None

    def identity(self) -> dict[str, object]:
        return {
            "encoder": self.name,
            "model": self.model_name,
            "weights": file_identity(self.path),
            "preprocess": preprocess_cfg(self.model_name),
            "pooled": "projected image embedding (not normalised)",
            **self.options.describe(),
        }

    def _load(self) -> None:
        import open_clip
        from open_clip.transform import PreprocessCfg, image_transform_v2

        cfg = preprocess_cfg(self.model_name)
        try:
            model = open_clip.create_model(self.model_name, pretrained=str(self.path), weights_only=True)
        except Exception as err:  # a refused pickle, a bad file or a state dict that does not fit
            reason = " ".join(str(err).split())[:300] or type(err).__name__
            raise ConfigError(f"--vision {self.name}: {self.path}: {reason}") from None
        if np.any(np.atleast_1d(model.visual.preprocess_cfg["size"]) != np.atleast_1d(cfg["size"])):
            raise ConfigError(f"{self.model_name}: tower image size differs from its config")
        if self.options.patches:
            if not hasattr(model.visual, "output_tokens") or not hasattr(model.visual, "class_embedding"):
                raise ConfigError(
                    f"--vision {self.name}: {self.model_name}'s image tower gives no patch tokens"
                )
            model.visual.output_tokens = True
        self._transform = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
        self._tokenizer = open_clip.get_tokenizer(self.model_name)
        self._model = model

    def _encode_batch(self, images: list[Image.Image]) -> dict[str, Any]:
        import torch

        pixels = torch.stack([self._transform(img) for img in images]).to(self.device)
        if self.options.patches:
            pooled, tokens = self._model.visual(pixels)
            return {"pooled": pooled, "patches": tokens}
        return {"pooled": self._model.encode_image(pixels)}

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """(n, embed_dim) float32 text embeddings in the image embeddings' space (not normalised)."""
        import torch

        self.load()
        batch_list = texts or [""]  # no texts still needs the embedding width
        parts = []
        with torch.inference_mode():
            size = self.options.batch_size or self.default_batch_size
            for begin in range(0, len(batch_list), size):
                tokens = self._tokenizer(batch_list[begin : begin + size]).to(self.device)
                parts.append(self._model.encode_text(tokens).float().cpu().numpy())
        result = np.concatenate(parts).astype(np.float32, copy=False)
        return result if texts else result[:0]


@VISION_ENCODERS.register("clip", label="open_clip image tower (a checkpoint of yours)", gives="vector")
def clip(options: VisionOptions, source: str | None) -> ClipEncoder:
    model_name, _, file = (source or "").partition(":")
    if not model_name or not file:
        raise ConfigError(
            "--vision clip needs the model and a local checkpoint: clip=<open_clip model>:<file> "
            "(e.g. clip=ViT-B-32:/models/open_clip_model.safetensors); no CLIP weights are bundled"
        )
    preprocess_cfg(model_name)  # an unknown model name fails now, not at the first batch
    return ClipEncoder(options, model_name, checkpoint_path(file, f"--vision clip={source}"))
