"""Sliding windows over a subword sequence longer than the model takes.

Every subword is read from the window where it has the most context on both sides (the
"max context" rule of Hugging Face's question-answering scripts), so nothing is truncated and
no position sits at a window's cut edge when a better window exists.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    start: int  # first subword of the window, in the example's subword sequence
    end: int  # one past the last


def plan_windows(n_subwords: int, capacity: int, stride: int) -> tuple[list[Window], list[int]]:
    """Windows of at most ``capacity`` subwords, consecutive ones overlapping by ``stride``,
    and for each subword the index of the window to read it from."""
    if capacity < 1:
        raise ValueError("window capacity must be positive")
    if n_subwords <= capacity:
        return [Window(0, n_subwords)], [0] * n_subwords
    if not 0 <= stride < capacity:
        raise ValueError(f"stride {stride} must be in [0, {capacity})")
    step = capacity - stride
    windows = []
    start = 0
    while True:
        end = min(start + capacity, n_subwords)
        windows.append(Window(start, end))
        if end == n_subwords:
            break
        start += step
    owner = []
    for position in range(n_subwords):
        best, best_score = 0, -1
        for index, window in enumerate(windows):
            if window.start <= position < window.end:
                score = min(position - window.start, window.end - 1 - position)
                if score > best_score:
                    best, best_score = index, score
        owner.append(best)
    return windows, owner
