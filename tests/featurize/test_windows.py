from __future__ import annotations

import pytest

from featurize.text.windows import plan_windows


def test_short_input_is_one_window() -> None:
    windows, owner = plan_windows(5, 10, 3)
    assert len(windows) == 1 and owner == [0] * 5


@pytest.mark.parametrize(("n", "capacity", "stride"), [(11, 4, 2), (100, 10, 5), (31, 8, 0), (9, 8, 7)])
def test_every_subword_read_from_a_window_that_holds_it(n: int, capacity: int, stride: int) -> None:
    windows, owner = plan_windows(n, capacity, stride)
    assert windows[0].start == 0 and windows[-1].end == n
    assert all(w.end - w.start <= capacity for w in windows)
    for position, index in enumerate(owner):
        window = windows[index]
        assert window.start <= position < window.end
        # No other window gives this position more context on its nearer side.
        best = max(
            min(position - w.start, w.end - 1 - position) for w in windows if w.start <= position < w.end
        )
        assert min(position - window.start, window.end - 1 - position) == best


def test_bad_stride() -> None:
    with pytest.raises(ValueError):
        plan_windows(20, 4, 4)
