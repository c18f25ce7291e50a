"""Run grid cells in worker processes and append each result to the run store as it finishes.

Workers are spawned once and run many cells (spawning a Python with torch per cell costs
seconds); each cell's peak memory is still its own: Linux lets a process reset its peak
resident size (``/proc/self/clear_refs``, value 5), done before every cell. Where that is not
allowed the process-lifetime peak is recorded and the line says so.

Two workers with one torch thread each is the default: on this 2-core machine it finished a
grid faster than one worker with two threads (README, "bench heads"; ``--workers/--threads``
measure it again).
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

from bench.grid import Cell, models_folder, paused_state
from bench.run_store import RunStore

_THREADS = 1


def _init_worker(threads: int) -> None:
    global _THREADS
    _THREADS = threads
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    limit_native_threads(threads)


def limit_native_threads(threads: int) -> None:
    """Hold OpenMP and BLAS (scikit-learn's KMeans, numpy) to the worker's threads, as torch is.
    Left alone, each worker's KMeans ran 2 OpenMP + 2 OpenBLAS threads beside the other worker
    on this 2-core machine: the crfsuite cell with KMeans took 405 s and the CWI cells beside it
    twice their time per epoch (docs: bench, "where the time goes"). KMeans' centres with one
    thread differ from two threads' by at most 1e-6 and give every word the same cluster id.
    The limit lasts for the worker process's life (threadpoolctl keeps it until reset)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_cell(cell_json: dict, cache_root: str, runs_root: str, save_models: bool) -> dict:
    """One cell in a worker; returns the store line (never raises: a failure is a result)."""
    cell = Cell(**cell_json)
    per_cell_peak = _reset_peak()
    started = time.perf_counter()
    out = models_folder(Path(runs_root), cell) if save_models else None
    try:
        record = _train(cell, Path(cache_root), out, Path(runs_root))
    except Exception as err:  # noqa: BLE001  (any failure is recorded, the grid goes on)
        return {
            "key": cell.key,
            "status": "failed",
            "cell": cell.identity(),
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(limit=6),
            "wall_seconds": time.perf_counter() - started,
        }
    record["peak_memory_mib"] = _peak_mib()
    record["peak_memory_scope"] = "cell" if per_cell_peak else "worker process"
    halted = record.get("halted_at") is not None
    return {
        "key": cell.key,
        "status": "stopped" if halted else "done",  # stopped: paused at a halving rung
        **({"stop_after": cell.stop_after} if halted else {}),
        "cell": cell.identity(),
        "model": str(out) if out else None,
        "wall_seconds": time.perf_counter() - started,
        "worker": {"pid": os.getpid(), "torch_threads": _THREADS},
        "record": record,
    }


def _train(cell: Cell, cache_root: Path, out: Path | None, runs_root: Path) -> dict:
    from heads.experiment import RunSpec
    from heads.families import family_of_head
    from heads.train_config import TrainConfig

    inputs = cell.inputs()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    # a halving round pauses the cell with its state on disk; the next round goes on from it
    paused = paused_state(runs_root, cell.key)
    pause_state = str(paused) if cell.stop_after is not None or paused.exists() else None
    config = TrainConfig(
        **(
            cell.train
            | {
                "seed": cell.seed,
                "threads": _THREADS,
                "stop_after": cell.stop_after,
                "pause_state": pause_state,
            }
        )
    )
    spec = RunSpec(head=cell.head, inputs=inputs, modality=cell.modality, train=config)
    return family_of_head(cell.head).train(spec, cache_root, out, quiet=True)


def run_grid(
    cells: list[Cell],
    store: RunStore,
    cache_root: Path,
    runs_root: Path,
    workers: int,
    threads: int,
    save_models: bool,
    on_done: Callable[[dict], None],
) -> float:
    """Run ``cells`` (already filtered to unfinished ones); returns the wall seconds."""
    started = time.perf_counter()
    if not cells:
        return 0.0
    args = (str(cache_root), str(runs_root), save_models)
    context = get_context("spawn")  # a fresh interpreter: no torch thread pools inherited by fork
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(threads,)
    ) as pool:
        pending: set[Future] = set()
        queue = list(cells)
        try:
            while queue or pending:
                while queue and len(pending) < 2 * workers:  # submit lazily: Ctrl-C leaves little queued
                    pending.add(pool.submit(run_cell, asdict(queue.pop(0)), *args))
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    line = future.result()
                    store.append(line)
                    on_done(line)
        except BaseException:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return time.perf_counter() - started
