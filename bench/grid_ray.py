"""``bench heads --engine ray``: the grid's cells as Ray tasks, the run store kept by the driver.

Each cell is one Ray task (``--threads`` CPUs, and ``--gpus-per-cell`` of a GPU when asked),
running the very function the local runner's worker processes run (bench.grid_runner.run_cell),
with the same torch thread count, so a cell's metrics are the same on both engines (same
hardware). The task trains into a temporary folder on its node and returns the store line and
the saved model's files through Ray's object store (and a halving rung's paused training state,
which the driver keeps and sends with the survivor's next task); this process (the driver)
writes the model under ``RUNS/cells/<key>/`` and appends the line to the run store as each cell
finishes, exactly as the local runner does, so a Ray grid resumes, reports and picks winners
like a local one.

What the cells read, the feature cache, must be readable at the same path on every node (a
shared file system, or a copy: entries are immutable and named by their content); the runs
folder is the driver's alone. A cell whose node dies is retried by Ray (``max_retries``);
one that still fails gets a ``failed`` line, which the next run retries, as locally.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.grid import Cell, models_folder, paused_state
from bench.run_store import RunStore
from featurize.atomic import atomic_folder

# Cells queued per free slot: enough that no slot waits for the driver, few enough that Ctrl-C
# leaves little queued.
QUEUED_PER_SLOT = 2
# Ray retries a cell whose worker process or node died this many times.
CELL_RETRIES = 2


def _set_threads(threads: int) -> None:
    """The local runner's worker set-up, safe in a Ray worker process that runs many tasks."""
    import torch

    from bench import grid_runner

    grid_runner._THREADS = threads
    grid_runner.limit_native_threads(threads)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # set once per process already (a reused Ray worker)
        pass


def _read_folder(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes); {} when there is none."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_folder(folder: Path, files: dict[str, bytes]) -> None:
    """``files`` as the whole of ``folder``, through a temporary folder renamed into place."""
    with atomic_folder(folder) as tmp:
        for name, data in files.items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def ray_cell(
    cell_json: dict, cache_root: str, save_models: bool, threads: int, paused: dict[str, bytes] | None = None
) -> tuple[dict, dict[str, bytes], str, dict[str, bytes]]:
    """One cell on a Ray worker: the store line, the model's files (path -> bytes), the
    temporary runs folder the line names (the driver puts its own in its place) and, for a
    cell paused at a halving rung, its training state's files. ``paused``: the state the
    driver holds from the previous rung, which the cell goes on from."""
    from bench.grid_runner import run_cell

    _set_threads(threads)
    with tempfile.TemporaryDirectory(prefix="mner-cell-") as tmp:
        state = paused_state(Path(tmp), Cell(**cell_json).key)
        if paused:
            _write_folder(state, paused)
        line = run_cell(cell_json, cache_root, tmp, save_models)
        model = line.get("model")
        files = _read_folder(Path(model)) if model else {}
        return line, files, tmp, _read_folder(state) if line["status"] == "stopped" else {}


def receive(
    line: dict, files: dict[str, bytes], tmp: str, runs_root: Path, paused: dict[str, bytes] | None = None
) -> dict:
    """The driver's side: the model written under RUNS/cells/<key>/, a paused cell's state under
    RUNS/paused/<key>/ (a finished cell's removed), the line pointing there."""
    cell = Cell(**line["cell"])
    if files:
        folder = models_folder(runs_root, cell)
        shutil.rmtree(folder, ignore_errors=True)
        _write_folder(folder, files)
    state = paused_state(runs_root, cell.key)
    if paused:
        _write_folder(state, paused)
    elif line["status"] == "done":
        shutil.rmtree(state, ignore_errors=True)
    # the worker's temporary runs folder, wherever the line names it, becomes the driver's
    text = json.dumps(line).replace(json.dumps(tmp)[1:-1], json.dumps(str(runs_root))[1:-1])
    return json.loads(text)


def _failed(cell: Cell, err: BaseException, seconds: float) -> dict:
    return {
        "key": cell.key,
        "status": "failed",
        "cell": cell.identity(),
        "error": f"{type(err).__name__}: {err}",
        "traceback": "",
        "wall_seconds": seconds,
    }


def run_grid_ray(
    cells: list[Cell],
    store: RunStore,
    cache_root: Path,
    runs_root: Path,
    threads: int,
    save_models: bool,
    on_done: Callable[[dict], None],
    address: str | None = None,
    gpus_per_cell: float = 0.0,
    local_cpus: int | None = None,
) -> float:
    """Run ``cells`` (already filtered to unfinished ones) as Ray tasks on the cluster at
    ``address`` (None: a Ray started on this machine with ``local_cpus`` CPUs, stopped after);
    returns the wall seconds."""
    from featurize.ray_engine import connect, disconnect

    started = time.perf_counter()
    if not cells:
        return 0.0
    owned = connect(address, local_cpus)
    try:
        _run(cells, store, cache_root, runs_root, threads, save_models, on_done, gpus_per_cell)
    finally:
        disconnect(owned)
    return time.perf_counter() - started


def _run(
    cells: list[Cell],
    store: RunStore,
    cache_root: Path,
    runs_root: Path,
    threads: int,
    save_models: bool,
    on_done: Callable[[dict], None],
    gpus_per_cell: float,
) -> None:
    import ray

    task = ray.remote(ray_cell).options(num_cpus=threads, num_gpus=gpus_per_cell, max_retries=CELL_RETRIES)
    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // threads)
    if gpus_per_cell:
        slots = min(slots, int(resources.get("GPU", 0) // gpus_per_cell))
    limit = QUEUED_PER_SLOT * max(1, slots)
    queue = list(cells)  # longest first, as planned
    pending: dict[Any, tuple[Cell, float]] = {}
    args = (str(cache_root.resolve()), save_models, threads)
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                cell = queue.pop(0)
                # a halving survivor goes on from the state its previous rung sent back
                paused = _read_folder(paused_state(runs_root, cell.key))
                pending[task.remote(asdict(cell), *args, paused)] = (cell, time.perf_counter())
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                cell, submitted = pending.pop(ref)
                try:
                    line, files, tmp, paused = ray.get(ref)
                    line = receive(line, files, tmp, runs_root, paused)
                except ray.exceptions.RayError as err:  # its node died beyond the retries, say
                    line = _failed(cell, err, time.perf_counter() - submitted)
                store.append(line)
                on_done(line)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def local_cpus(workers: int, threads: int) -> int:
    """A Ray started for the grid gets the CPUs the local runner would use (``--workers`` x
    ``--threads``), so ``--engine ray`` on one machine runs as many cells at once."""
    return max(1, math.ceil(workers * threads))
