"""A head on top of live encoders: what ``bench finetune`` trains end to end and what a
fine-tuned run folder holds.

Training reads each batch's words (and second segments, and image files when the vision
encoder is trained) and computes the features the cache would have held, with gradients;
evaluation and prediction compute them through the encoders' own ``encode`` (the path of
``featurize`` and ``heads predict``), so a fine-tuned model scores the same in ``bench
finetune``'s report and from its saved folder. A frozen vision encoder is not run at all: its
cached vectors are read, as the frozen-feature heads read them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from featurize.errors import ConfigError
from featurize.text.trainable import TrainableWordFeatures
from heads.data import Batch, SplitData
from heads.tagger import Tagger


def vision_module(encoder: Any) -> nn.Module:
    """The torch module behind a vision encoder (a ViT, a classifier's network)."""
    encoder.load()
    model = encoder._model
    module = model if isinstance(model, nn.Module) else getattr(model, "module", None)
    if not isinstance(module, nn.Module):
        raise ConfigError(f"vision encoder {encoder.name} has no trainable torch module")
    return module


class TrainableVision(nn.Module):
    """A vision encoder with gradients: per example the mean of its images' pooled vectors and
    the patch grid of its first image, as the cache reader gives them."""

    def __init__(self, encoder: Any, patches: bool = False) -> None:
        super().__init__()
        self.__dict__["encoder"] = encoder
        self.model = vision_module(encoder)
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.patches = patches
        self._decoded: dict[str, Any] = {}

    def train(self, mode: bool = True) -> TrainableVision:
        """Batch norm keeps its pretrained statistics: a batch of tweets holds a few images at
        most (often one), too few to estimate them, and new estimates would shift every feature."""
        super().train(mode)
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def _image(self, path: str) -> Any:
        from featurize.vision.images import load_image

        if path not in self._decoded:  # the few images of a dataset here; decoding is the slow part
            self._decoded[path] = load_image(Path(path))
        return self._decoded[path]

    def forward(self, files: list[list[str]], width: int) -> dict[str, Tensor]:
        distinct = sorted({f for fs in files for f in fs})
        n = len(files)
        device = next(self.model.parameters()).device
        out: dict[str, Tensor] = {
            "image": torch.zeros(n, width, device=device),
            "has_image": torch.tensor([bool(fs) for fs in files], device=device),
        }
        if not distinct:
            if self.patches:
                out["patches"] = torch.zeros(n, 1, width, device=device)
            return out
        arrays = self.encoder._encode_batch([self._image(f) for f in distinct])
        row = {f: i for i, f in enumerate(distinct)}
        pooled = arrays["pooled"].float()
        image = torch.stack(
            [
                pooled[[row[f] for f in fs]].mean(0) if fs else pooled.new_zeros(pooled.shape[1])
                for fs in files
            ]
        )
        out["image"] = image
        if self.patches:
            grid = arrays["patches"].float()
            out["patches"] = torch.stack(
                [grid[row[fs[0]]] if fs else torch.zeros_like(grid[0]) for fs in files]
            )
        return out


class EndToEnd(nn.Module):
    """Text encoders (in ``inputs.text`` order, concatenated per word), an optional trained
    vision encoder and the head."""

    def __init__(
        self,
        text: dict[str, TrainableWordFeatures],
        head: Tagger,
        vision: TrainableVision | None = None,
        knowledge_hints: bool = False,
    ) -> None:
        super().__init__()
        self.names = list(text)
        self.text = nn.ModuleList(text[name] for name in self.names)
        self.head = head
        self.vision = vision
        self.knowledge_hints = knowledge_hints  # heads.knowledge_hints' columns after the encoders'

    def live_batch(self, batch: Batch, data: SplitData) -> Batch:
        """``batch`` with the text (and trained image) features computed from the raw inputs."""
        words = [data.words[i] for i in batch.index]
        contexts = [data.contexts[i] for i in batch.index] if data.contexts is not None else None
        if self.text:
            parts = [encoder(words, contexts) for encoder in self.text]
            if self.knowledge_hints:
                parts.append(self._hints(words, contexts, parts[0]))
            batch.text = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        if self.vision is not None:
            if data.image_files is None:
                raise ConfigError(f"{data.name}: no image files recorded for the trained vision encoder")
            width = int(self.head.dims.image)
            live = self.vision([data.image_files[i] for i in batch.index], width)
            batch.image, batch.has_image = live["image"], live["has_image"]
            if "patches" in live:
                batch.patches = live["patches"]
        return batch

    @staticmethod
    def _hints(words: list[list[str]], contexts: list[str | None] | None, like: Tensor) -> Tensor:
        """The batch's hint columns, padded as the encoders pad their words (``like``)."""
        from heads.knowledge_hints import HINT_DIM, hints_for

        out = like.new_zeros((like.shape[0], like.shape[1], HINT_DIM))
        for s, hints in enumerate(hints_for(words, contexts)):
            out[s, : len(hints)] = torch.from_numpy(hints).to(out)
        return out

    def loss(self, batch: Batch, data: SplitData) -> Tensor:
        return self.head.loss(self.live_batch(batch, data))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The head's components, the text encoders as ``text`` and the vision encoder as
        ``vision``; frozen parameters (a LoRA base) are left out."""
        groups = {k: list(v) for k, v in self.head.parameter_groups().items()}
        for encoder in self.text:
            groups.setdefault("text", []).extend(p for p in encoder.parameters() if p.requires_grad)
        if self.vision is not None:
            groups.setdefault("vision", []).extend(p for p in self.vision.parameters() if p.requires_grad)
        return {k: v for k, v in groups.items() if v}

    @torch.no_grad()
    def featurized(self, data: SplitData) -> SplitData:
        """``data`` with its features computed by the encoders as they are now (eval mode,
        their ``encode``): what a frozen head would read, for evaluation and prediction."""
        was = self.training
        self.eval()
        try:
            features = None
            if self.text:
                parts = [encoder.encoder.encode(data.words, None, data.contexts) for encoder in self.text]
                features = np.concatenate(
                    [np.concatenate([p[i] for p in parts], axis=1) for i in range(len(data))], axis=0
                ).astype(np.float32)
            out = replace(data, features=features)
            if features is not None and self.knowledge_hints:
                from heads.data import with_hints

                with_hints(out)
            if self.vision is not None and data.image_files is not None:
                out.image, out.has_image, grids = self.vision_arrays(data.image_files)
                if self.vision.patches:
                    out.patches = grids
            return out
        finally:
            self.train(was)

    def vision_arrays(self, files: list[list[str]]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray | None]]:
        """Pooled vectors and first-image patch grids through the vision encoder's own
        ``encode`` (inference), laid out as the cache reader lays them out."""
        assert self.vision is not None
        distinct = sorted({f for fs in files for f in fs})
        width = int(self.head.dims.image)
        image = np.zeros((len(files), width), dtype=np.float32)
        grids: list[np.ndarray | None] = [None] * len(files)
        if distinct:
            arrays = self.vision.encoder.encode([self.vision._image(f) for f in distinct])
            row = {f: i for i, f in enumerate(distinct)}
            for i, fs in enumerate(files):
                if fs:
                    image[i] = arrays["pooled"][[row[f] for f in fs]].mean(0)
                    if "patches" in arrays:
                        grids[i] = arrays["patches"][row[fs[0]]]
        return image, np.array([bool(fs) for fs in files], dtype=bool), grids
