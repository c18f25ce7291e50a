"""The speed-ups `bench heads` relies on compute what the plain versions compute: the dense
BiLSTM path (used under bf16 autocast) equals the packed one, the uniform-threshold dropout has
dropout's distribution, and the one-sine SineReLU is the preprint's formula."""

from __future__ import annotations

import math

import pytest
import torch

from featurize.errors import ConfigError
from heads.dropout import Dropout
from heads.models.cwi import SineReLU
from heads.tagger import BiLSTM
from heads.train_config import TrainConfig


@pytest.mark.parametrize("layers", [1, 2])
def test_dense_bilstm_equals_packed_outputs_and_gradients(layers: int) -> None:
    torch.manual_seed(0)
    lstm = BiLSTM(12, 6, layers)
    lengths = torch.tensor([7, 3, 5, 1, 6])
    mask = torch.arange(7)[None] < lengths[:, None]
    x = torch.randn(5, 7, 12) * mask[..., None]
    packed = lstm(x, mask)
    packed.pow(2).sum().backward()
    grads = [p.grad.clone() for p in lstm.parameters()]
    lstm.zero_grad()
    dense = lstm._dense(x, mask)
    dense.pow(2).sum().backward()
    assert torch.allclose(dense, packed, atol=1e-6)
    assert (dense[~mask] == 0).all()
    for a, b in zip(grads, [p.grad for p in lstm.parameters()]):
        assert torch.allclose(a, b, atol=1e-5)


def test_bf16_autocast_takes_the_dense_path_and_stays_close() -> None:
    torch.manual_seed(0)
    lstm = BiLSTM(12, 6)
    mask = torch.arange(9)[None] < torch.tensor([9, 4])[:, None]
    x = torch.randn(2, 9, 12) * mask[..., None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = lstm(x, mask)
    from featurize.text.transformer import native_bf16

    if native_bf16("cpu"):
        assert fast.dtype == torch.bfloat16  # a packed LSTM would have stayed fp32
    assert torch.allclose(fast.float(), lstm(x, mask), atol=0.02)


def test_bf16_without_a_onednn_primitive_falls_back_to_the_packed_recurrence(monkeypatch) -> None:
    """CPUs without native bf16 lack oneDNN's bf16 LSTM for some shapes: the packed path runs."""
    torch.manual_seed(0)
    lstm = BiLSTM(12, 6)
    mask = torch.arange(9)[None] < torch.tensor([9, 4])[:, None]
    x = torch.randn(2, 9, 12) * mask[..., None]

    def missing(*_a: object) -> None:
        raise RuntimeError(
            "could not create a primitive descriptor for the LSTM forward propagation primitive"
        )

    monkeypatch.setattr(lstm, "_dense", missing)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lstm(x, mask)
    assert torch.allclose(out.float(), lstm(x, mask), atol=0.02)
    monkeypatch.setattr(lstm, "_dense", lambda *_a: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="other"), torch.autocast("cpu", dtype=torch.bfloat16):
        lstm(x, mask)


def test_dropout_keeps_the_expected_share_and_scales() -> None:
    torch.manual_seed(0)
    drop = Dropout(0.3)
    x = torch.ones(200_000)
    y = drop(x)
    kept = (y != 0).float().mean().item()
    assert kept == pytest.approx(0.7, abs=0.005)
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)  # inverted dropout keeps the mean
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ValueError):
        Dropout(1.0)


def test_sine_relu_is_the_preprint_formula() -> None:
    x = torch.linspace(-20, 20, 4001)
    expected = torch.where(x > 0, x, 0.0025 * (torch.sin(x) - torch.cos(x)))
    assert torch.allclose(SineReLU()(x), expected, atol=1e-6)
    assert SineReLU()(torch.tensor([-3 * math.pi / 4])).abs().item() < 1e-6  # sin x = cos x there


def test_sine_relu_gradient_is_the_formula_derivative() -> None:
    x = torch.linspace(-6, 6, 240, dtype=torch.float64).requires_grad_()  # not 0: the kink
    assert torch.autograd.gradcheck(SineReLU(), (x,))
    SineReLU()(x).sum().backward()
    expected = torch.where(x > 0, 1.0, 0.0025 * (torch.cos(x) + torch.sin(x)))
    assert torch.allclose(x.grad, expected.detach(), atol=1e-12)


def test_char_cnn_encodes_each_distinct_word_once_with_the_same_result() -> None:
    """Repeated words are computed once: in eval the result equals encoding every word."""
    from heads.models.cwi import CharCNN

    torch.manual_seed(0)
    cnn = CharCNN(30).eval()
    chars = torch.randint(2, 30, (3, 6, 9))
    chars[:, :, 5:] = 0
    chars[1] = chars[0]  # every word of tweet 1 repeats tweet 0
    chars[2, 4:] = 0  # two padded positions
    out = cnn(chars)
    real = chars[:, :, 0] != 0
    one_by_one = torch.stack([cnn(chars[b : b + 1, t : t + 1])[0, 0] for b in range(3) for t in range(6)])
    assert torch.allclose(out[real], one_by_one.view(3, 6, -1)[real], atol=1e-6)
    assert (out[~real] == 0).all()
    cnn.train()
    out = cnn(chars)  # copies share the dropout masks: equal to the first occurrence
    assert torch.equal(out[0], out[1])
    out.sum().backward()
    assert cnn.embedding.weight.grad is not None


def test_precision_is_checked() -> None:
    assert TrainConfig(precision="bf16").precision == "bf16"
    with pytest.raises(ConfigError, match="--precision"):
        TrainConfig(precision="fp16")
