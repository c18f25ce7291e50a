"""``featurize --engine ray``: an entry's chunks computed by long-lived Ray actors.

Ray Data's batch-inference pattern, on the cache's own chunk plan: per encoder a pool of
actors (``--workers``, each with ``cpus_per_worker`` CPUs and ``--gpus-per-worker`` GPUs)
builds the encoder from its :class:`~featurize.engines.EncoderRecipe`, loads the model once and
then computes whole chunks, two queued per actor so none waits for its next payload. The arrays
come back through Ray's object store; this process (the driver) writes each chunk file as it
arrives and publishes the entry exactly as a local run does (featurize.cache.store), so
the workers need no shared file system, and a driver killed mid-run resumes from the chunk
files already written, like a local one.

A worker that dies (its process killed, its node lost) costs the chunks it held: they go back
to the queue and another worker (or the one started in its place) computes them again; a chunk
that took :data:`MAX_ATTEMPTS` workers down with it stops the run with its number. An error in
the computation itself (bad options, a worker whose weights differ from the driver's) is no
worker's fault: it stops the run as it would locally.

Without ``--ray-address`` a Ray instance is started on this machine, bound to 127.0.0.1, with
no dashboard, and stopped at the end; with one (``auto`` or ``HOST:PORT``) the run connects to
that cluster and leaves it running.
"""

from __future__ import annotations

import io
import logging
import math
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from featurize.build import encode_chunk
from featurize.cache.store import Chunk, EntryBuild
from featurize.engines import KIND_TEXT, ChunkJobs, EncoderRecipe, Engine, EngineOptions
from featurize.errors import CacheError, ConfigError
from featurize.image_entries import encode_images
from featurize.vision.images import ImageError, load_image

# Chunks queued on one actor at a time: one computing, one waiting, so no worker idles while
# the driver writes a chunk file or sends the next payload.
DEPTH = 2
# A chunk lost with its worker this many times stops the run (it may be what kills them: out
# of memory on its longest inputs).
MAX_ATTEMPTS = 4
# How long to wait on Ray before saying what the run waits for.
PATIENCE_S = 60.0
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
# Called after each chunk file is written, with the pool and the chunk: for tests (kill a
# worker mid-entry, interrupt the driver) and monitoring.
CHUNK_HOOKS: list[Callable[[RayWorkers, int], None]] = []


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def require_ray() -> None:
    if not ray_available():
        raise ConfigError(
            "--engine ray needs Ray: pip install -e '.[distributed]' (or pip install ray) "
            "on the driver and on every node"
        )


def is_loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS


def loopback_only() -> None:
    """A Ray that lives on this machine only: its processes bind 127.0.0.1 (Ray on Linux would
    otherwise bind the address other machines reach) and no other node can join. Ray's own
    switch for single-machine clusters, set for this process and the Ray processes it starts."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import sys

    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # Ray imported already: its constant was read at import
        constants.ENABLE_RAY_CLUSTER = False


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect this process to Ray: to the cluster at ``address`` (``auto`` or ``HOST:PORT``), or,
    with None, to a Ray instance started here on 127.0.0.1 (``num_cpus``, no dashboard). A
    process already connected stays so. Returns whether a Ray instance was started (the caller
    shuts it down: :func:`disconnect`)."""
    require_ray()
    if address is None or is_loopback(address):
        loopback_only()
    import ray

    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:  # "local": a new instance, whatever cluster this machine last ran
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
        return True
    try:
        ray.init(address=address, **quiet)
    except ConnectionError as err:
        raise ConfigError(
            f"--ray-address {address}: {err}. Start the cluster first (ray start --head); one with "
            "token authentication also needs RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN or "
            "RAY_AUTH_TOKEN_PATH) here"
        ) from None
    return False


def disconnect(started: bool) -> None:
    if started:
        import ray

        ray.shutdown()


def _lost_errors() -> tuple[type[BaseException], ...]:
    """What Ray raises when a worker (or its node, or the object holding its answer) is gone."""
    from ray import exceptions as rx

    return (rx.RayActorError, rx.WorkerCrashedError, rx.NodeDiedError, rx.ObjectLostError)


def _raise_cause(err: BaseException) -> None:
    """An exception raised by our code on a worker, raised here as itself (a ConfigError stays a
    ConfigError: one line and exit 2 on the command line)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, Exception):
        raise cause from None
    raise err


def compute_chunk(kind: str, encoder: Any, payload: tuple) -> tuple:
    """A worker's side of a chunk (featurize.engines.text_jobs, image_jobs made the payload): the
    function the local engine runs, on the words or on the image bytes sent."""
    if kind == KIND_TEXT:
        sentences, texts, budget = payload
        before = encoder.stats.input_subwords
        chunk = encode_chunk(encoder, sentences, texts, budget)
        return chunk, encoder.stats.input_subwords - before
    files, blobs = payload
    contents = dict(zip(files, blobs))

    def read(name: str) -> Any:
        try:
            return load_image(io.BytesIO(contents[name]))
        except ImageError as err:  # named by its file, as the local engine names it
            raise ImageError(name, err.reason) from None

    notes = io.StringIO()
    console = Console(file=notes, width=10_000, color_system=None, highlight=False)
    arrays = encode_images(encoder, files, range(len(files)), console, [], read)
    return arrays, [line for line in notes.getvalue().splitlines() if line.strip()]


class ChunkWorker:
    """One Ray actor: builds its encoder from the recipe, loads the model once (:meth:`ready`),
    then computes whole chunks (:meth:`compute`) with the function the local engine runs."""

    def __init__(self, recipe: EncoderRecipe, threads: int) -> None:
        self.recipe = recipe
        self.threads = threads
        self.encoder: Any = None

    def ready(self) -> dict[str, object]:
        import ray
        import torch

        started = time.perf_counter()
        torch.set_num_threads(self.threads)
        self.encoder = self.recipe.build()  # a ConfigError when its identity is not the driver's
        self.encoder.load()
        return {
            "pid": os.getpid(),
            "node": ray.util.get_node_ip_address(),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
            "load_seconds": time.perf_counter() - started,
        }

    def pid(self) -> int:
        return os.getpid()

    def compute(self, chunk: int, payload: tuple) -> tuple:
        return compute_chunk(self.recipe.kind, self.encoder, payload)


class _ChunksColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        done, total = task.fields.get("chunks", 0), task.fields.get("n_chunks", 0)
        elapsed = task.finished_time if task.finished else task.elapsed
        rate = f"{done / elapsed:,.2f}" if elapsed and done else "-"
        return Text(f"{done}/{total} chunks {rate}/s", style="progress.data.speed")


class _UnitRateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "words")
        elapsed = task.finished_time if task.finished else task.elapsed
        speed = task.completed / elapsed if elapsed and task.completed else None
        return Text(f"{speed:,.0f} {unit}/s" if speed else f"- {unit}/s", style="progress.data.speed")


class RayWorkers:
    """The actors of one encoder, started on first use and kept for all its entries."""

    def __init__(self, engine: RayEngine, recipe: EncoderRecipe) -> None:
        self.engine = engine
        self.recipe = recipe
        self.actors: dict[int, Any] = {}  # worker number -> actor handle, ready to compute
        self.starting: dict[Any, int] = {}  # ready() ref -> worker number
        self.handles: dict[int, Any] = {}  # every live worker's handle, ready or starting
        self.info: dict[int, dict[str, object]] = {}
        self.in_flight: dict[Any, tuple[int, int]] = {}  # compute ref -> (chunk, worker number)
        self.lost_chunks = 0  # chunks recomputed because their worker died
        self.lost_workers = 0
        self.failed_starts = 0
        self._next = 0
        self._announced = False
        # the last entry's run: chunks, units, seconds from the first worker ready (monitoring)
        self.last_run: dict[str, float] = {}

    # -- workers ---------------------------------------------------------------------------
    def _start(self, n: int) -> None:
        import ray

        options = self.engine.options
        remote = ray.remote(ChunkWorker).options(
            num_cpus=options.cpus_per_worker,
            num_gpus=options.gpus_per_worker,
            max_restarts=0,  # a dead worker is replaced by the driver, its chunks requeued
            max_task_retries=0,
        )
        threads = max(1, math.floor(options.cpus_per_worker))
        for _ in range(n):
            handle = remote.remote(self.recipe, threads)
            number, self._next = self._next, self._next + 1
            self.handles[number] = handle
            self.starting[handle.ready.remote()] = number

    def _drop(self, number: int) -> list[int]:
        """A worker found dead: forget it, start another in its place; returns its chunks."""
        import ray

        handle = self.handles.pop(number, None)
        self.actors.pop(number, None)
        if handle is not None:
            ray.kill(handle)  # no-op when gone already; frees its resources when only stuck
        chunks = [c for ref, (c, w) in list(self.in_flight.items()) if w == number]
        self.in_flight = {ref: cw for ref, cw in self.in_flight.items() if cw[1] != number}
        self._start(1)
        return chunks

    def worker_pids(self) -> dict[int, int]:
        """Each ready worker's process id (for tests and monitoring)."""
        return {n: int(self.info[n]["pid"]) for n in self.actors}  # type: ignore[arg-type]

    def close(self) -> None:
        if not self.handles:
            return
        import ray

        for handle in self.handles.values():
            ray.kill(handle)
        self.handles.clear()
        self.actors.clear()
        self.starting.clear()
        self.in_flight.clear()

    # -- computing an entry ----------------------------------------------------------------
    def run(self, build: EntryBuild, jobs: ChunkJobs) -> None:
        """Compute the pending chunks of ``build`` on the workers, writing each as it arrives.
        Chunks another process is computing (their lock is held) are left to it and waited for,
        as the local engine does; any it leaves undone are computed here afterwards."""
        self.engine.connect()
        claims: dict[int, ExitStack] = {}
        queue: deque[int] = deque()
        busy: list[int] = []
        try:
            for chunk in build.pending():
                stack = ExitStack()
                if stack.enter_context(build.claim(chunk, wait=False)):
                    claims[chunk] = stack
                    queue.append(chunk)
                else:
                    stack.close()
                    if not build.done(chunk):
                        busy.append(chunk)
            units = sum(jobs.size(build.plan.chunk_range(c)) for c in queue)
            self._drive(build, jobs, queue, claims, units)
            for chunk in busy:
                with build.claim(chunk, wait=True) as mine:
                    if mine:
                        size = jobs.size(build.plan.chunk_range(chunk))
                        self._drive(build, jobs, deque([chunk]), {}, size)
        finally:
            for stack in claims.values():
                stack.close()

    def _drive(
        self, build: EntryBuild, jobs: ChunkJobs, queue: deque[int], claims: dict[int, ExitStack], units: int
    ) -> None:
        import ray

        lost_errors = _lost_errors()
        console = self.engine.console
        attempts: Counter[int] = Counter()
        lost_before = (self.lost_workers, self.lost_chunks)
        if not self.handles:
            self._start(self.engine.n_workers())
        columns = (
            TextColumn(f"{jobs.label} [dim]ray[/]"),
            BarColumn(bar_width=24),
            _ChunksColumn(),
            _UnitRateColumn(),
            TextColumn("{task.fields[workers]} workers"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            # the clock (and the rates) start when a worker has its model loaded
            fields = {"chunks": 0, "n_chunks": len(queue), "unit": jobs.unit, "workers": len(self.actors)}
            task = progress.add_task(jobs.unit, total=units, start=bool(self.actors), **fields)
            started = time.perf_counter() if self.actors else None
            written = 0
            waited = time.perf_counter()
            while queue or self.in_flight:
                self._feed(queue, build, jobs)
                waiting = list(self.in_flight) + list(self.starting)
                if not waiting:  # every worker gone and none starting: start them again
                    self._start(self.engine.n_workers())
                    continue
                done, _ = ray.wait(waiting, num_returns=1, timeout=PATIENCE_S)
                if not done:
                    if not self.actors and time.perf_counter() - waited > PATIENCE_S:
                        progress.console.print(
                            f"  ray: still waiting for a worker to start ({len(self.starting)} pending; "
                            f"each needs {self.engine.options.cpus_per_worker:g} CPU, "
                            f"{self.engine.options.gpus_per_worker:g} GPU; cluster: {ray.cluster_resources()})",
                            markup=False,
                            highlight=False,
                        )
                        waited = time.perf_counter()
                    continue
                ref = done[0]
                if ref in self.starting:
                    self._started(ref, lost_errors)
                    if self.actors and started is None:
                        started = time.perf_counter()
                        progress.start_task(task)
                    progress.update(task, workers=len(self.actors))
                    continue
                chunk, number = self.in_flight.pop(ref)
                try:
                    answer = ray.get(ref)
                except lost_errors as err:
                    requeue = [chunk, *self._drop(number)]
                    self.lost_workers += 1
                    self.lost_chunks += len(requeue)
                    for c in requeue:
                        attempts[c] += 1
                        if attempts[c] >= MAX_ATTEMPTS:
                            raise CacheError(
                                f"chunk {c} of entry {build.plan.key[:12]} was lost with its worker "
                                f"{attempts[c]} times (last: {type(err).__name__}); it may be what kills "
                                "them (out of memory?): try a smaller --chunk-size"
                            ) from None
                    queue.extendleft(reversed(sorted(requeue)))
                    progress.console.print(
                        f"  ray: worker {number} lost ({type(err).__name__}); chunk(s) "
                        f"{', '.join(map(str, sorted(requeue)))} go to another worker",
                        markup=False,
                        highlight=False,
                    )
                    progress.update(task, workers=len(self.actors))
                    continue
                except ray.exceptions.RayTaskError as err:
                    _raise_cause(err)
                result = jobs.receive(answer)
                if isinstance(result, Chunk):
                    build.write_chunk(chunk, result.arrays, result.counts)
                else:
                    build.write_chunk(chunk, result)
                stack = claims.pop(chunk, None)
                if stack is not None:
                    stack.close()
                written += 1
                size = jobs.size(build.plan.chunk_range(chunk))
                progress.update(task, advance=size, chunks=written, workers=len(self.actors))
                for hook in CHUNK_HOOKS:
                    hook(self, chunk)
        seconds = time.perf_counter() - started if started is not None else 0.0
        self.last_run = {"chunks": written, "units": units, "seconds": seconds}
        lost_workers, lost_chunks = self.lost_workers - lost_before[0], self.lost_chunks - lost_before[1]
        nodes = sorted({str(i["node"]) for i in self.info.values()})
        rate = f"{written / seconds:.2f} chunks/s, {units / seconds:,.0f} {jobs.unit}/s" if seconds else "-"
        lost = (
            f"; {lost_chunks} chunk(s) computed again after {lost_workers} lost worker(s)"
            if lost_workers
            else ""
        )
        console.print(
            f"  ray: {written} chunks in {seconds:.1f} s ({rate}, timed from the first worker ready) on "
            f"{len(self.actors)} workers, node(s) {', '.join(nodes)}{lost}",
            markup=False,
            highlight=False,
        )

    def _feed(self, queue: deque[int], build: EntryBuild, jobs: ChunkJobs) -> None:
        """Give each ready worker chunks until it holds DEPTH of them."""
        load = Counter(number for _, number in self.in_flight.values())
        for number, handle in list(self.actors.items()):
            while queue and load[number] < DEPTH:
                chunk = queue.popleft()
                ref = handle.compute.remote(chunk, jobs.payload(build.plan.chunk_range(chunk)))
                self.in_flight[ref] = (chunk, number)
                load[number] += 1

    def _started(self, ref: Any, lost_errors: tuple[type[BaseException], ...]) -> None:
        import ray

        number = self.starting.pop(ref)
        try:
            info = ray.get(ref)
        except lost_errors as err:
            self.failed_starts += 1
            if self.failed_starts > 2 * max(1, self.engine.n_workers()) + 2:
                raise CacheError(
                    f"Ray workers for {self.recipe.spec} keep dying while loading the model "
                    f"({type(err).__name__}): out of memory? See the worker logs under /tmp/ray/session_latest/logs"
                ) from None
            self._drop(number)
            return
        except ray.exceptions.RayTaskError as err:
            _raise_cause(err)
        self.info[number] = info
        self.actors[number] = self.handles[number]
        if not self._announced and not self.starting:
            self._announced = True
            loads = [float(i["load_seconds"]) for i in self.info.values()]  # type: ignore[arg-type]
            self.engine.console.print(
                f"  ray: {len(self.actors)} workers ready for {self.recipe.spec} "
                f"(model loaded in {max(loads):.1f} s)",
                markup=False,
                highlight=False,
            )


class RayEngine(Engine):
    """One featurize run's Ray: connected (or started) on the first chunk to compute, one pool
    of workers per encoder (the previous encoder's are let go first, freeing their GPUs)."""

    def __init__(self, options: EngineOptions, console: Console) -> None:
        require_ray()
        self.options = options
        self.console = console
        self.connected = False
        self.started = False
        self.pool: RayWorkers | None = None

    def connect(self) -> None:
        if self.connected:
            return
        num_cpus = None
        if self.options.address is None:
            wanted = (self.options.workers or 0) * self.options.cpus_per_worker
            num_cpus = max(math.ceil(wanted), os.cpu_count() or 1)
        self.started = connect(self.options.address, num_cpus)
        self.connected = True

    def n_workers(self) -> int:
        if self.options.workers:
            return self.options.workers
        import ray

        resources = ray.cluster_resources()
        if self.options.gpus_per_worker:
            gpus = resources.get("GPU", 0)
            if not gpus:
                raise ConfigError("--gpus-per-worker: the Ray cluster has no GPU")
            return max(1, int(gpus // self.options.gpus_per_worker))
        return max(1, int(resources.get("CPU", 1) // self.options.cpus_per_worker))

    def workers(self, recipe: EncoderRecipe) -> RayWorkers:
        if self.pool is not None and self.pool.recipe == recipe:
            return self.pool
        if self.pool is not None:
            self.pool.close()
        self.pool = RayWorkers(self, recipe)
        return self.pool

    def close(self) -> None:
        if self.pool is not None and self.connected:
            self.pool.close()
        self.pool = None
        disconnect(self.started)
        self.started = self.connected = False


@contextmanager
def open_engine(options: EngineOptions, console: Console) -> Iterator[Engine]:
    """The engine of one featurize run: the local one, or a Ray engine, which connects (or starts
    Ray) only when a chunk needs computing and at the end lets go of its workers, and of a Ray it
    started."""
    if options.name == "local":
        yield Engine()
        return
    engine = RayEngine(options, console)
    try:
        yield engine
    finally:
        engine.close()
