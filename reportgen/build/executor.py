"""Where a build's independent jobs run: in this process (the default) or on a Ray cluster.

An executor takes a module-level function and jobs that hold only paths, specs and numbers (never a live
Keras object: a worker loads the `.keras` file itself) and yields each job's result as it finishes.
`LocalExecutor` runs them one after another here, as reportgen always did, and never imports Ray;
`RayExecutor` runs one Ray task per job with the CPU and GPU share each job asks for, retries a job whose
worker was lost, and turns a job's error into one `Error:` line naming the job. Only the caller (the
driver) acts on results: it prints and swaps finished models into the site. `RayChunkPool` spreads one model's
feature-visualization chunks over Ray actors (`ChunkWorker`) that each hold the model and its traced loops.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from reportgen.util import progress
from reportgen.util.errors import ReportgenError

RAY_MISSING = 'Ray is not installed: --ray and executor = "ray" need it: pip install "reportgen[ray]"'
RETRIES = 2  # a job whose worker process or node died is run again this many times
# Environment a worker needs to find what the driver finds: the Keras datasets, this reportgen, quiet TensorFlow.
WORKER_ENV = ("KERAS_HOME", "PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")

Job = TypeVar("Job")


@dataclass(frozen=True)
class Resources:
    """What one job takes of a node."""

    cpus: int = 1
    gpus: float = 0.0


class Executor(Protocol):
    """Runs `fn(job)` for every job and yields (job, result) as each finishes."""

    name: str

    def run(self, fn: Callable[[Job], Any], jobs: Iterable[Job], label: Callable[[Job], str],
            resources: Resources, weight: Callable[[Job], float] = lambda job: 1.0) -> Iterator[tuple[Job, Any]]: ...

    def check_storage(self, folder: Path, paths: list[str]) -> None: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Every job in this process, in order: today's build."""

    name = "local"

    def run(self, fn: Callable[[Job], Any], jobs: Iterable[Job], label: Callable[[Job], str],
            resources: Resources, weight: Callable[[Job], float] = lambda job: 1.0) -> Iterator[tuple[Job, Any]]:
        for job in jobs:
            progress.log(label(job))
            yield job, fn(job)

    def check_storage(self, folder: Path, paths: list[str]) -> None:
        pass  # this process reads what the driver reads

    def close(self) -> None:
        pass


class RayExecutor:
    """One Ray task per job on a cluster (`address` HOST:PORT or "auto") or a private instance ("local").

    "auto" joins the cluster RAY_ADDRESS or `ray start` names, else starts a private instance with this
    machine's CPUs and GPUs. Jobs run in worker processes that Ray starts fresh (no fork of this process);
    each gets `Resources` of a node, and Ray sets CUDA_VISIBLE_DEVICES for its GPU share.
    """

    name = "ray"

    def __init__(self, address: str = "auto", num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ReportgenError(RAY_MISSING) from None
        self._ray = ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        logging.getLogger("ray").setLevel(logging.ERROR)  # its notices at start-up; errors reach the user as ours
        self._runtime_env = worker_runtime_env()
        private = {"include_dashboard": False, "log_to_driver": False, "num_cpus": num_cpus,
                   "configure_logging": False}
        self._owned = not ray.is_initialized()
        if not self._owned:
            self.address = "this process's"
        elif address == "local":
            ray.init(address="local", **private)
            self.address = "local"
        elif address == "auto":
            try:
                ray.init(address="auto", log_to_driver=False, configure_logging=False)
                self.address = "auto"
            except ConnectionError:
                ray.init(address="local", **private)
                self.address = "local"
        else:
            _check_reachable(address)
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError) as exc:
                raise ReportgenError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
            self.address = address

    def run(self, fn: Callable[[Job], Any], jobs: Iterable[Job], label: Callable[[Job], str],
            resources: Resources, weight: Callable[[Job], float] = lambda job: 1.0) -> Iterator[tuple[Job, Any]]:
        """All jobs at once, Ray placing them; one bar whose ETA counts each job's `weight` (its expected work)."""
        ray = self._ray
        remote = ray.remote(fn).options(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=RETRIES,
                                        retry_exceptions=False, runtime_env=self._runtime_env)
        pending = {remote.remote(job): job for job in jobs}
        work = {ref: max(1, round(weight(job))) for ref, job in pending.items()}
        start = time.perf_counter()
        try:
            with progress.bar(sum(work.values()), f"models on Ray ({len(pending)})", unit="work") as bar:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    job = pending.pop(ready[0])
                    result = self._result(ready[0], label(job))
                    progress.log(f"{label(job)}: done after {time.perf_counter() - start:.0f} s")
                    bar.update(work[ready[0]])
                    yield job, result
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def check_storage(self, folder: Path, paths: list[str]) -> None:
        """Before any work: one task on every node reads a file the driver just wrote into `folder` (the site)
        and finds every one of `paths` (model files, data, the cache's folder), else one `Error:` line: every node
        must see the same storage at the same paths."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        token = f"{os.getpid()}-{time.time_ns()}"
        marker = folder / f".reportgen-probe-{token}"
        marker.write_text(token, encoding="utf-8")
        try:
            probe = ray.remote(_sees)
            nodes = [node for node in ray.nodes() if node.get("Alive")]
            refs = {probe.options(num_cpus=0, max_retries=RETRIES, runtime_env=self._runtime_env,
                                  scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                    .remote(str(marker), token, paths, os.getcwd()): node.get("NodeManagerAddress", "?")
                    for node in nodes}
            for ref, address in refs.items():
                missing = ray.get(ref)
                if missing:
                    raise ReportgenError(f"Ray node {address} does not see {missing}: the model files, data, cache and "
                                         "site must be on storage every node sees, at the same path")
        finally:
            marker.unlink(missing_ok=True)

    def _result(self, ref: Any, label: str) -> Any:
        """The job's result, or one `Error:` line naming the job."""
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if exc.cause is not None else exc
            if isinstance(cause, ReportgenError):
                raise ReportgenError(f"{label}: {cause}") from None
            message = str(cause).strip().splitlines()[-1] if str(cause).strip() else ""
            raise ReportgenError(f"{label}: {type(cause).__name__}: {message}") from None
        except ray.exceptions.RayError as exc:  # a worker or node lost more often than RETRIES allows
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ReportgenError(f"{label}: lost its Ray worker {RETRIES + 1} times ({first})") from None

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()


def _check_reachable(address: str, seconds: float = 10.0) -> None:
    """A HOST:PORT cluster address answers, else one `Error:` line (Ray itself would keep trying for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ReportgenError(f"--ray {address!r}: expected auto, local or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise ReportgenError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc})") from None


def prepare_worker(cpus: int) -> None:
    """In a Ray worker, before TensorFlow runs anything: its thread pools sized to the worker's CPU share (TF
    ignores the OMP_NUM_THREADS Ray sets, and N workers on a node would each start all-core pools), and GPU
    memory taken as needed, so workers sharing a GPU (`gpus_per_model` < 1) fit. A reused worker keeps its
    settings (TensorFlow refuses to change them once it has started)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(cpus)
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass


def worker_runtime_env() -> dict[str, Any] | None:
    """The driver's environment variables a worker needs (WORKER_ENV), as a Ray runtime_env."""
    env = {key: os.environ[key] for key in WORKER_ENV if key in os.environ}
    return {"env_vars": env} if env else None


def _sees(marker: str, token: str, paths: list[str], cwd: str) -> str | None:
    """On one node: the first of the driver's marker file and `paths` (relative to `cwd`) it cannot see."""
    try:
        if Path(marker).read_text(encoding="utf-8") != token:
            return str(Path(marker).parent)
    except OSError:
        return str(Path(marker).parent)
    for path in paths:
        if not (Path(cwd) / path).exists():
            return path
    return None


def check_executor(kind: str) -> None:
    """Before any work: Ray is importable when the build asks for it, else one `Error:` line."""
    if kind == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ReportgenError(RAY_MISSING) from None


def open_executor(kind: str, address: str = "auto") -> LocalExecutor | RayExecutor:
    """The executor a build asked for ("local" or "ray"); Ray is imported only for "ray"."""
    return RayExecutor(address) if kind == "ray" else LocalExecutor()


class ChunkWorker:
    """A Ray actor that holds one model (loaded from its file as the build loads it) and renders its feature-
    visualization chunks, keeping every chunk layout's traced loop for the next chunk of that layout."""

    def __init__(self, job: Any) -> None:
        from reportgen.build.pipeline import load_model_and_data
        from reportgen.methods.featvis import ChunkRenderer

        progress.set_quiet(True)
        prepare_worker(job.options.cpus_per_model)
        os.chdir(job.cwd)
        _, network, _ = load_model_and_data(job.spec, job.options)
        self.renderer = ChunkRenderer(network)

    def render(self, chunk: Any, seed: int) -> Any:
        return self.renderer.render(chunk, seed)


class RayChunkPool:
    """Feature-visualization chunks of one model spread over `workers` ChunkWorker actors: largest first, each
    to an idle worker that already traced its layout when there is one. A lost actor is restarted (it loads the
    model again) and its chunk retried."""

    def __init__(self, job: Any, workers: int, resources: Resources) -> None:
        import ray

        self._ray, self._job, self._count, self._resources = ray, job, max(1, workers), resources
        self.workers: list[Any] = []

    def run(self, chunks: list, seed: int) -> Iterator[tuple[int, Any]]:
        from reportgen.methods.featvis import chunk_layout, chunk_work

        ray = self._ray
        if not self.workers:  # started once the driver has loaded (or trained) the model they load
            actor = ray.remote(ChunkWorker).options(num_cpus=self._resources.cpus, num_gpus=self._resources.gpus,
                                                    max_restarts=RETRIES, max_task_retries=RETRIES,
                                                    runtime_env=worker_runtime_env())
            self.workers = [actor.remote(self._job) for _ in range(self._count)]
        progress.log(f"    {len(chunks)} chunk(s) on {len(self.workers)} Ray worker(s), largest first")
        order = sorted(range(len(chunks)), key=lambda i: -chunk_work(chunks[i]))
        traced: dict[int, set] = {w: set() for w in range(len(self.workers))}
        idle, running = list(range(len(self.workers))), {}
        while order or running:
            while idle and order:
                worker = idle.pop(0)
                pick = next((i for i in order if chunk_layout(chunks[i]) in traced[worker]), order[0])
                order.remove(pick)
                traced[worker].add(chunk_layout(chunks[pick]))
                running[self.workers[worker].render.remote(chunks[pick], seed)] = (worker, pick)
            ready, _ = ray.wait(list(running), num_returns=1)
            worker, index = running.pop(ready[0])
            idle.append(worker)
            try:
                yield index, ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                where = f"{self._job.spec.name}: feature-visualization chunk {index + 1} of {len(chunks)}"
                raise ReportgenError(f"{where}: {message}") from None

    def close(self) -> None:
        for worker in self.workers:
            self._ray.kill(worker)


def chunk_workers(resources: Resources) -> int:
    """How many chunk workers fit the cluster: one per GPU share, else one per `resources.cpus` CPUs."""
    import ray

    total = ray.cluster_resources()
    if resources.gpus:
        return max(1, int(total.get("GPU", 0) // resources.gpus))
    return max(1, int(total.get("CPU", 1) // resources.cpus))
