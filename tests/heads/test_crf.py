"""heads.crf.LinearChainCRF against brute-force enumeration of every tag sequence on tiny inputs."""

from __future__ import annotations

import itertools

import pytest
import torch

from heads.crf import LinearChainCRF, allowed_transitions

BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def random_crf(tags: list[str], constrain: str, seed: int) -> LinearChainCRF:
    """A CRF whose transition, start and end scores are set by hand to random values."""
    crf = LinearChainCRF(tags, constrain)
    g = torch.Generator().manual_seed(seed)
    k = len(tags)
    with torch.no_grad():
        crf.transitions.copy_(torch.randn(k, k, generator=g) * 2)
        crf.start.copy_(torch.randn(k, generator=g) * 2)
        crf.end.copy_(torch.randn(k, generator=g) * 2)
    return crf


def random_batch(k: int, lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Emissions (B, T, K), gold tags (B, T) and a left-aligned mask for the given lengths; padded
    positions hold large random scores and random tags, which must not matter."""
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    emissions = torch.randn(len(lengths), t, k, generator=g) * 2
    tags = torch.randint(0, k, (len(lengths), t), generator=g)
    mask = torch.zeros(len(lengths), t, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, :n] = True
        emissions[b, n:] = torch.randn(t - n, k, generator=g) * 50
    return emissions, tags, mask


def path_score(crf: LinearChainCRF, emissions: torch.Tensor, path: tuple[int, ...]) -> float:
    """score(y) = start[y0] + sum_t emission[t, y_t] + sum_t transition[y_{t-1}, y_t] + end[y_last]."""
    start, end, transitions = crf.start.detach(), crf.end.detach(), crf.transitions.detach()
    score = float(start[path[0]]) + float(end[path[-1]])
    score += sum(float(emissions[t, y]) for t, y in enumerate(path))
    score += sum(float(transitions[a, b]) for a, b in zip(path, path[1:]))
    return score


def nll_of(crf: LinearChainCRF, *args: torch.Tensor) -> float:
    return float(crf.nll(*args).detach())


def is_valid(tags: list[str], path: tuple[int, ...]) -> bool:
    """BIO written out independently of allowed_transitions: I-X only right after B-X or I-X."""
    for t, y in enumerate(path):
        tag = tags[y]
        if tag.startswith("I-"):
            if t == 0 or tags[path[t - 1]] not in ("B-" + tag[2:], tag):
                return False
    return True


def all_paths(k: int, n: int, tags: list[str] | None = None) -> list[tuple[int, ...]]:
    paths = list(itertools.product(range(k), repeat=n))
    return [p for p in paths if is_valid(tags, p)] if tags else paths


def brute_nll(crf, emissions, gold, n, tags=None) -> float:
    scores = torch.tensor([path_score(crf, emissions[:n], p) for p in all_paths(emissions.shape[1], n, tags)])
    return float(torch.logsumexp(scores, 0)) - path_score(crf, emissions[:n], tuple(gold[:n].tolist()))


def brute_best(crf, emissions, n, tags=None) -> list[int]:
    paths = all_paths(emissions.shape[1], n, tags)
    return list(max(paths, key=lambda p: path_score(crf, emissions[:n], p)))


def test_allowed_transitions_for_bio() -> None:
    start, allowed = allowed_transitions(BIO)
    assert start.tolist() == [True, True, False, True, False]

    def follows(frm: str, to: str) -> bool:
        return not to.startswith("I-") or frm in ("B-" + to[2:], to)

    expected = [[follows(a, b) for b in BIO] for a in BIO]
    assert allowed.tolist() == expected
    assert not allowed[BIO.index("O"), BIO.index("I-PER")]
    assert not allowed[BIO.index("B-LOC"), BIO.index("I-PER")]
    assert allowed[BIO.index("I-PER"), BIO.index("I-PER")]


@pytest.mark.parametrize("k", [3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nll_is_log_partition_minus_gold_score(k: int, seed: int) -> None:
    tags = [f"T{i}" for i in range(k)]  # no BIO prefixes: nothing is constrained
    crf = random_crf(tags, "none", seed)
    lengths = [4, 2, 1]
    emissions, gold, mask = random_batch(k, lengths, seed + 10)
    expected = [brute_nll(crf, emissions[b], gold[b], n) for b, n in enumerate(lengths)]
    for b, n in enumerate(lengths):  # each sequence alone ...
        alone = nll_of(crf, emissions[b : b + 1, :n], gold[b : b + 1, :n], mask[b : b + 1, :n])
        assert alone == pytest.approx(expected[b], abs=1e-4)
    # ... and the batch (a mean over its sequences)
    assert nll_of(crf, emissions, gold, mask) == pytest.approx(sum(expected) / 3, abs=1e-4)


@pytest.mark.parametrize("constrain", ["none", "decode"])
def test_nll_ignores_constraints_unless_both(constrain: str) -> None:
    """Training sees every sequence (I- openings included) unless constrain='both'."""
    crf = random_crf(BIO, constrain, 3)
    emissions, gold, mask = random_batch(5, [3, 2, 3], 4)
    gold[0] = torch.tensor([2, 2, 0])  # opens with I-PER: a real training set has such spans
    expected = sum(brute_nll(crf, emissions[b], gold[b], int(mask[b].sum())) for b in range(3)) / 3
    assert nll_of(crf, emissions, gold, mask) == pytest.approx(expected, abs=1e-4)


def test_nll_with_constrain_both_sums_over_valid_sequences_only() -> None:
    crf = random_crf(BIO, "both", 5)
    lengths = [4, 3, 1]
    emissions, _, mask = random_batch(5, lengths, 6)
    gold = torch.tensor([[1, 2, 0, 3], [3, 4, 4, 0], [0, 0, 0, 0]])  # valid BIO sequences
    expected = [brute_nll(crf, emissions[b], gold[b], n, BIO) for b, n in enumerate(lengths)]
    assert nll_of(crf, emissions, gold, mask) == pytest.approx(sum(expected) / 3, abs=1e-3)
    unconstrained = [brute_nll(crf, emissions[b], gold[b], n) for b, n in enumerate(lengths)]
    assert sum(unconstrained) / 3 > sum(expected) / 3 + 1e-3  # the constraint changed something


@pytest.mark.parametrize("k", [3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_decode_is_brute_force_argmax(k: int, seed: int) -> None:
    tags = [f"T{i}" for i in range(k)]
    crf = random_crf(tags, "none", seed)
    lengths = [4, 3, 1]
    emissions, _, mask = random_batch(k, lengths, seed + 20)
    decoded = crf.decode(emissions, mask)
    assert decoded == [brute_best(crf, emissions[b], n) for b, n in enumerate(lengths)]


@pytest.mark.parametrize("seed", range(6))
def test_constrained_decode_is_brute_force_argmax_over_valid_bio(seed: int) -> None:
    crf = random_crf(BIO, "decode", seed)
    lengths = [4, 2, 3]
    emissions, _, mask = random_batch(5, lengths, seed + 30)
    decoded = crf.decode(emissions, mask)
    assert decoded == [brute_best(crf, emissions[b], n, BIO) for b, n in enumerate(lengths)]
    free = LinearChainCRF(BIO, "none")
    free.load_state_dict(crf.state_dict())
    assert free.decode(emissions, mask) == [brute_best(crf, emissions[b], n) for b, n in enumerate(lengths)]


def test_constrained_decode_never_writes_an_invalid_transition() -> None:
    crf = LinearChainCRF(BIO, "decode")  # zero transitions: the emissions alone would decide
    o, b_per, i_per, b_loc, i_loc = range(5)
    emissions = torch.full((3, 4, 5), -10.0)
    wanted = [[i_per, i_per, o, i_loc], [o, i_per, b_loc, i_per], [b_per, i_loc, i_loc, o]]
    for b, seq in enumerate(wanted):
        for t, y in enumerate(seq):
            emissions[b, t, y] = 1000.0
    mask = torch.ones(3, 4, dtype=torch.bool)
    free = LinearChainCRF(BIO, "none")
    assert free.decode(emissions, mask) == wanted  # what the emissions favour is invalid BIO
    decoded = crf.decode(emissions, mask)
    assert all(is_valid(BIO, tuple(p)) for p in decoded), decoded
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        noisy = torch.randn(8, 4, 5, generator=g) * 300
        assert all(is_valid(BIO, tuple(p)) for p in crf.decode(noisy, torch.ones(8, 4, dtype=torch.bool)))


@pytest.mark.parametrize("constrain", ["none", "decode", "both"])
def test_padding_changes_nothing(constrain: str) -> None:
    crf = random_crf(BIO, constrain, 7)
    lengths = [2, 4, 1, 3]
    emissions, gold, mask = random_batch(5, lengths, 8)
    gold = torch.tensor([[1, 2, 0, 0], [0, 3, 4, 0], [3, 0, 0, 0], [1, 2, 2, 0]])
    batch_paths = crf.decode(emissions, mask)
    batch_nll = nll_of(crf, emissions, gold, mask)
    alone_nll = []
    for b, n in enumerate(lengths):
        one = (emissions[b : b + 1, :n], mask[b : b + 1, :n])
        assert crf.decode(*one) == [batch_paths[b]]
        assert len(batch_paths[b]) == n
        alone_nll.append(nll_of(crf, one[0], gold[b : b + 1, :n], one[1]))
    assert batch_nll == pytest.approx(sum(alone_nll) / len(lengths), abs=1e-4)
    # Other garbage in the padding: still the same answers
    noisy = emissions.clone()
    noisy[~mask] = -noisy[~mask] + 100
    assert crf.decode(noisy, mask) == batch_paths
    assert nll_of(crf, noisy, gold, mask) == pytest.approx(batch_nll, abs=1e-4)


def test_nll_is_differentiable_and_decreases_with_training() -> None:
    crf = random_crf(BIO, "decode", 9)
    emissions, _, mask = random_batch(5, [4, 3], 10)
    gold = torch.tensor([[1, 2, 0, 3], [3, 4, 0, 0]])
    emissions.requires_grad_(True)
    optimizer = torch.optim.SGD([emissions, *crf.parameters()], lr=0.5)
    first = None
    for _ in range(100):
        optimizer.zero_grad()
        loss = crf.nll(emissions, gold, mask)
        first = first if first is not None else float(loss.detach())
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < first / 2
    assert crf.decode(emissions.detach(), mask) == [[1, 2, 0, 3], [3, 4, 0]]


def test_unknown_constrain_is_refused() -> None:
    with pytest.raises(ValueError, match="constrain"):
        LinearChainCRF(BIO, "always")


@pytest.mark.parametrize("constrain", ["none", "decode"])
def test_marginals_are_brute_force_path_probabilities(constrain: str) -> None:
    """P(tag k at word t) = the summed probability of every (valid, when decoding is
    constrained) path through k at t; padding changes nothing."""
    crf = random_crf(BIO, constrain, 11)
    lengths = [4, 2, 3]
    emissions, _, mask = random_batch(5, lengths, 12)
    marginals = crf.marginals(emissions, mask).exp()
    for b, n in enumerate(lengths):
        paths = all_paths(5, n, BIO if constrain == "decode" else None)
        weights = torch.tensor([path_score(crf, emissions[b, :n], p) for p in paths]).softmax(0)
        for t in range(n):
            expected = torch.zeros(5)
            for p, w in zip(paths, weights):
                expected[p[t]] += w
            assert torch.allclose(marginals[b, t], expected, atol=1e-5), (b, t)
        assert torch.allclose(marginals[b, :n].sum(-1), torch.ones(n), atol=1e-5)
