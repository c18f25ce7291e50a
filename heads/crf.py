"""One linear-chain CRF for every torch head: negative log-likelihood, Viterbi, BIO constraints.

Written here rather than taken from a library: ``pytorch-crf`` (the usual choice) has had no
release since 2019 and has no transition constraints, and AllenNLP's CRF, which has them,
comes with a deprecated framework. The CRF is ~100 lines of textbook forward algorithm and
Viterbi, pinned by tests against brute-force enumeration on tiny inputs.

Constraints (no ``O -> I-X``, no ``B-X -> I-Y``, no sequence opening with ``I-X``) are applied
when decoding by default and not in training, because the real training sets contain spans
that open with ``I-`` (T15: 186 in train) whose likelihood a hard constraint would make zero.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

NEG = -1e4  # a transition score that no path survives, without the NaNs of -inf in logsumexp


def allowed_transitions(tags: list[str]) -> tuple[Tensor, Tensor]:
    """``(start_allowed (K,), allowed (K, K))`` for BIO tags: I-X may follow only B-X or I-X."""

    def entity(tag: str) -> str:
        return tag[2:] if tag[:2] in ("B-", "I-") else ""

    k = len(tags)
    start = torch.ones(k, dtype=torch.bool)
    allowed = torch.ones(k, k, dtype=torch.bool)
    for j, to in enumerate(tags):
        if not to.startswith("I-"):
            continue
        start[j] = False
        for i, frm in enumerate(tags):
            allowed[i, j] = frm != "O" and entity(frm) == entity(to)
    return start, allowed


class LinearChainCRF(nn.Module):
    def __init__(self, tags: list[str], constrain: str = "decode") -> None:
        super().__init__()
        if constrain not in ("none", "decode", "both"):
            raise ValueError(f"constrain must be none, decode or both, not {constrain!r}")
        k = len(tags)
        self.constrain = constrain
        self.transitions = nn.Parameter(torch.zeros(k, k))  # [from, to]
        self.start = nn.Parameter(torch.zeros(k))
        self.end = nn.Parameter(torch.zeros(k))
        start_ok, allowed = allowed_transitions(tags)
        self.register_buffer("start_ok", start_ok, persistent=False)
        self.register_buffer("allowed", allowed, persistent=False)

    def _scores(self, constrained: bool) -> tuple[Tensor, Tensor]:
        if not constrained:
            return self.transitions, self.start
        trans = self.transitions.masked_fill(~self.allowed, NEG)
        return trans, self.start.masked_fill(~self.start_ok, NEG)

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Mean negative log-likelihood of ``tags`` (B, T) given emissions (B, T, K); mask (B, T)
        is a left-aligned prefix of ones per sequence (every sequence has at least one word)."""
        trans, start = self._scores(self.constrain == "both")
        return (
            self._log_partition(emissions, mask, trans, start)
            - self._gold_score(emissions, tags, mask, trans, start)
        ).mean()

    def _gold_score(
        self, emissions: Tensor, tags: Tensor, mask: Tensor, trans: Tensor, start: Tensor
    ) -> Tensor:
        maskf = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        score = start[tags[:, 0]] + (emit * maskf).sum(1)
        score = score + (trans[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)
        return score + self.end[last]

    def _log_partition(self, emissions: Tensor, mask: Tensor, trans: Tensor, start: Tensor) -> Tensor:
        alpha = start + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor) -> list[list[int]]:
        """Viterbi: the best tag sequence of each input, cut to its length."""
        trans, start = self._scores(self.constrain in ("decode", "both"))
        batch, length, _ = emissions.shape
        score = start + emissions[:, 0]
        history = []
        for t in range(1, length):
            best, back = (score.unsqueeze(2) + trans.unsqueeze(0)).max(dim=1)
            step = best + emissions[:, t]
            keep = mask[:, t].unsqueeze(1)
            score = torch.where(keep, step, score)
            # Past a sequence's end the back-pointer is the identity, so the path stays put.
            identity = torch.arange(score.shape[1], device=score.device).expand(batch, -1)
            history.append(torch.where(keep, back, identity))
        score = score + self.end
        lengths = mask.sum(1).tolist()
        best_last = score.argmax(1).tolist()
        pointers = torch.stack(history).cpu().numpy() if history else None  # (T-1, B, K)
        paths = []
        for b in range(batch):
            tag = best_last[b]
            path = [tag]
            if pointers is not None:
                for t in range(pointers.shape[0] - 1, -1, -1):
                    tag = int(pointers[t, b, tag])
                    path.append(tag)
            path.reverse()
            paths.append(path[: lengths[b]])
        return paths

    @torch.no_grad()
    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Forward-backward: log P(tag k at word t | input), (B, T, K), under the transitions
        decoding uses; a word's confidence in its Viterbi tag (``heads predict --scans``)."""
        trans, start = self._scores(self.constrain in ("decode", "both"))
        length = emissions.shape[1]
        alpha = start + emissions[:, 0]
        alphas = [alpha]
        for t in range(1, length):
            step = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
            alphas.append(alpha)
        log_z = torch.logsumexp(alpha + self.end, dim=1)  # (B,)
        beta = self.end.expand_as(alpha)  # past a sequence's end beta stays at the end scores
        betas = [beta]
        for t in range(length - 1, 0, -1):
            step = torch.logsumexp(trans.unsqueeze(0) + (emissions[:, t] + beta).unsqueeze(1), dim=2)
            beta = torch.where(mask[:, t].unsqueeze(1), step, beta)
            betas.append(beta)
        betas.reverse()
        return torch.stack(alphas, 1) + torch.stack(betas, 1) - log_z[:, None, None]
