"""The evaluation service: where candidate networks are pruned and scored.

Searches never call a backend themselves. They ask the task
(:meth:`rlprune.evaluation.task.PruningTask.evaluate`) for one candidate, or hand it a batch
of channel configurations to score ahead (:meth:`~rlprune.evaluation.task.PruningTask.prefetch`);
the task keeps the cache and the cost ledger in the driver and sends the configurations it
has not scored yet to its backend:

- :class:`InProcess` (the default): scored one at a time in this process, as they are
  asked for (prefetching does nothing);
- :class:`ProcessPool`: ``workers`` local processes; each gets the task once (forked
  from the driver on Linux, built from its recipe where processes are spawned) and then
  receives only channel tuples;
- :class:`RayActors`: ``workers`` Ray actors on the local machine or a cluster
  (``pip install 'rlprune[ray]'``; ``ray_address`` joins a running cluster); the task's
  recipe goes to the object store once and each actor builds the task from it.

A worker killed in the middle of an evaluation, or while idle, is replaced and the
evaluation retried (the process pool is rebuilt; Ray restarts the actor and retries the
task), so a search finishes with the result it would have had. Each worker runs torch with ``threads``
intra-op threads (1 by default: K workers on K cores).
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import multiprocessing
import os
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ..errors import ConfigError, ModelError, RLPruneError, one_line
from .scoring import to_fast_layout

if TYPE_CHECKING:
    from .task import PruningTask

__all__ = [
    "BACKENDS",
    "Backend",
    "EvaluationError",
    "InProcess",
    "ProcessPool",
    "RayActors",
    "Request",
    "Scored",
    "TaskRecipe",
    "close_all",
    "make_backend",
    "set_default_backend",
]

BACKENDS = ("local", "process", "ray")
"""Backend names for ``--backend``: ``local`` is in-process."""

Request = tuple[tuple[int, ...], int]
"""One evaluation: (channel counts per unit, validation images to score on)."""

TaskRecipe = Callable[[], "PruningTask"]
"""A picklable callable that builds the task in a worker (for presets,
``functools.partial(load_task, config)``)."""


class EvaluationError(RLPruneError):
    """Workers kept failing: an evaluation could not be completed."""


@dataclass(frozen=True)
class Scored:
    """What a worker sends back for one request: the pruned network's score and size, and
    the seconds it spent in each phase."""

    accuracy: float
    macs: int
    params: int
    prune_s: float
    calibrate_s: float
    evaluate_s: float


class Backend(Protocol):
    """Where the evaluations run."""

    workers: int
    name: str

    def score(self, requests: Sequence[Request]) -> list[Scored]:
        """Score every request; results in request order."""
        ...

    def close(self) -> None:
        """Stop the workers (a no-op in-process)."""
        ...


def score_on(task: PruningTask, request: Request) -> Scored:
    """Prune, recalibrate and score one request on ``task`` (what every worker runs)."""
    channels, images = request
    t0 = time.perf_counter()
    try:
        result = task.prune(channels)
        to_fast_layout(result.model, task.example_inputs)
        t1 = time.perf_counter()
        task.evaluator.calibrate(result.model)
        t2 = time.perf_counter()
        accuracy = task.evaluator.score(result.model, images)
    except (RLPruneError, MemoryError, torch.OutOfMemoryError):
        raise  # already one line, or the machine's limit rather than the model's fault
    except Exception as exc:  # the user's model code: its failure is the input's fault
        raise ModelError(
            f"the model failed on the pruned candidate {list(channels)} ({one_line(exc)}); a "
            "forward that fixes channel counts or shapes cannot be pruned: derive them from "
            "the input, or list that layer in ignored_layers"
        ) from exc
    t3 = time.perf_counter()
    return Scored(accuracy, int(result.macs), int(result.params), t1 - t0, t2 - t1, t3 - t2)


class InProcess:
    """Score in this process, one request at a time (today's behaviour, the default)."""

    name = "local"
    workers = 1

    def __init__(self, task: PruningTask) -> None:
        self._task = task

    def score(self, requests: Sequence[Request]) -> list[Scored]:
        """Score each request in turn on the driver's task."""
        return [score_on(self._task, r) for r in requests]

    def close(self) -> None:
        """Nothing to stop."""


# --- worker processes -----------------------------------------------------------------

_WORKER_TASK: PruningTask | None = None


def _build_worker_task(recipe: TaskRecipe, threads: int) -> PruningTask:
    torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the driver already showed the task's warnings
        return recipe()


def _process_init(recipe: TaskRecipe, threads: int) -> None:
    global _WORKER_TASK
    _WORKER_TASK = _build_worker_task(recipe, threads)


def _process_score(request: Request) -> Scored:
    if _WORKER_TASK is None:  # pragma: no cover - the initializer always ran
        raise RuntimeError("worker has no task")
    return score_on(_WORKER_TASK, request)


def _process_pid() -> int:
    return os.getpid()


def default_start_method() -> str:
    """``fork`` where the platform has it (fast, and scripts need no ``__main__`` guard;
    :mod:`rlprune` sets a forked child's torch threads to 1 so that it cannot deadlock in
    the parent's OpenMP pool), else ``spawn``."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


class ProcessPool:
    """``workers`` local processes, each getting the task once.

    With ``start_method="fork"`` (the default on Linux) ``recipe`` is called in each
    child after the fork and may simply return the driver's task; with ``spawn`` or
    ``forkserver`` it is pickled and must build the task (and the calling script needs an
    ``if __name__ == "__main__":`` guard, as for any spawned process).

    A worker that dies (killed, out of memory), during a request or while idle, breaks the
    pool: the pool is rebuilt and the requests not yet answered are sent again, up to
    ``retries`` times per call.
    """

    name = "process"

    def __init__(
        self,
        recipe: TaskRecipe,
        workers: int,
        threads: int = 1,
        retries: int = 3,
        start_method: str | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        self.workers = workers
        self.threads = threads
        self.retries = retries
        self.restarts = 0
        """How many times the pool was rebuilt after a worker died."""
        self.start_method = start_method or default_start_method()
        self._recipe = recipe
        self._pool: cf.ProcessPoolExecutor | None = None

    def _executor(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context(self.start_method),
                initializer=_process_init,
                initargs=(self._recipe, self.threads),
            )
        return self._pool

    def start(self) -> list[int]:
        """Start every worker and build its task now (otherwise the first requests wait
        for it); returns the workers' process ids."""
        pool = self._executor()
        for future in [pool.submit(time.sleep, 0.2) for _ in range(self.workers)]:
            future.result()
        return self.pids()

    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        if self._pool is None:
            return []
        return sorted(self._pool._processes or {})

    def score(self, requests: Sequence[Request]) -> list[Scored]:
        """Score the requests in parallel; results in request order."""
        results: list[Scored | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        failures = 0
        while pending:
            futures, broken = self._submit(requests, pending)
            for i, future in futures.items():
                try:
                    results[i] = future.result()
                except BrokenProcessPool:
                    broken = True
            pending = [i for i in pending if results[i] is None]
            if broken:
                failures += 1
                self.restarts += 1
                self._pool.shutdown(wait=True, cancel_futures=True)  # type: ignore[union-attr]
                self._pool = None
                if failures > self.retries:
                    raise EvaluationError(
                        f"a worker process died {failures} times during one batch of "
                        "evaluations; check its memory use, or use --backend local"
                    )
        return [r for r in results if r is not None]

    def _submit(
        self, requests: Sequence[Request], pending: Sequence[int]
    ) -> tuple[dict[int, cf.Future[Scored]], bool]:
        """Send the pending requests; also whether the pool was found broken (a worker
        died while idle, between calls), in which case the rest are not sent."""
        pool = self._executor()
        futures: dict[int, cf.Future[Scored]] = {}
        try:
            for i in pending:
                futures[i] = pool.submit(_process_score, requests[i])
        except BrokenProcessPool:
            return futures, True
        return futures, False

    def close(self) -> None:
        """Stop the workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# --- Ray ------------------------------------------------------------------------------


class _RayWorker:
    """A Ray actor holding one task (made remote in :class:`RayActors`)."""

    def __init__(self, recipe: TaskRecipe, threads: int) -> None:
        self.task = _build_worker_task(recipe, threads)

    def score(self, request: Request) -> Scored:
        return score_on(self.task, request)

    def pid(self) -> int:
        return os.getpid()


RAY_INLINE_BYTES = 64 * 1024
"""The largest task recipe sent inline with each Ray actor (Ray itself inlines up to 100 KiB)."""


class _DropTokenNotice(logging.Filter):
    """Drops Ray's notice that a new local instance uses token authentication (its
    default, which it announces as a warning on every start); passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


@contextmanager
def _quiet_token_notice() -> Iterator[None]:
    """While starting a local Ray instance: no token-authentication notice."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice = _DropTokenNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


class RayActors:
    """``workers`` Ray actors, each building the task once from a recipe put in the object
    store once. Actors killed mid-evaluation are restarted and their tasks retried by Ray
    (``max_restarts``, ``max_task_retries``).

    Joins the cluster at ``address`` (e.g. ``"ray://head:10001"`` or ``"auto"``) when
    given, else starts a local Ray instance with ``workers`` CPUs (or uses the one this
    process already started).
    """

    name = "ray"

    def __init__(
        self,
        recipe: TaskRecipe,
        workers: int,
        threads: int = 1,
        address: str | None = None,
        retries: int = 3,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        try:
            import ray
        except ModuleNotFoundError:
            raise ConfigError(
                "--backend ray needs Ray; install it with pip install 'rlprune[ray]'"
            ) from None
        self._ray = ray
        self.workers = workers
        self.threads = threads
        if not ray.is_initialized():
            # Ray's INFO lines ("Started a local Ray instance") are not the user's business;
            # its warnings and errors still show
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": logging.WARNING,
            }
            if address:
                ray.init(address=address, **options)
            else:
                with _quiet_token_notice():
                    ray.init(num_cpus=max(workers, os.cpu_count() or 1), **options)
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < workers:
            raise ConfigError(
                f"--workers {workers} asks for more Ray actors than the cluster's {cpus:g} "
                "CPUs (one each); lower --workers or add nodes"
            )
        remote = ray.remote(num_cpus=1, max_restarts=retries, max_task_retries=retries)
        actor_class = remote(_RayWorker)
        # A preset's recipe (a config) is small: sent inline with each actor, so it lives
        # as long as the actor. A large one (a model and data given in Python) goes to the
        # object store once and is kept here for restarts; for that case only, Ray logs an
        # error line per actor (ray-project/ray#53727), which would be noise for the former.
        recipe_arg: Any = recipe
        if len(ray.cloudpickle.dumps(recipe)) > RAY_INLINE_BYTES:
            recipe_arg = ray.put(recipe)
        self._recipe_ref = recipe_arg  # kept: restarted actors rebuild from it
        self._actors: list[Any] = [actor_class.remote(recipe_arg, threads) for _ in range(workers)]
        self._next = 0

    def pids(self) -> list[int]:
        """Process ids of the actors (waits until they are built)."""
        return list(self._ray.get([a.pid.remote() for a in self._actors]))

    start = pids

    def score(self, requests: Sequence[Request]) -> list[Scored]:
        """Score the requests on the actors, round robin; results in request order."""
        refs = []
        for request in requests:
            actor = self._actors[self._next % self.workers]
            self._next += 1
            refs.append(actor.score.remote(request))
        try:
            return list(self._ray.get(refs))
        except self._ray.exceptions.RayError as exc:
            raise EvaluationError(
                f"Ray could not complete an evaluation ({type(exc).__name__}); "
                "see the Ray logs, or use --backend local"
            ) from exc

    def close(self) -> None:
        """Stop the actors (the Ray instance stays up for this process)."""
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []


def threads_beside(workers: int, cores: int | None = None) -> int:
    """Torch threads for the process that drives ``workers`` local workers of one thread
    each: the cores they leave, at least one, so that no core runs two busy threads
    (torch's default, one thread per core, thrashes beside busy workers)."""
    return max(1, (cores or os.cpu_count() or 1) - workers)


@dataclass(frozen=True)
class BackendChoice:
    """What :func:`set_default_backend` chose: the arguments of :func:`make_backend`."""

    name: str = "local"
    workers: int = 1
    threads: int = 1
    ray_address: str | None = None


DEFAULT = BackendChoice()


def set_default_backend(
    name: str | None = None,
    workers: int = 1,
    *,
    threads: int = 1,
    ray_address: str | None = None,
) -> BackendChoice:
    """Where tasks without a backend of their own evaluate from now on (the CLI's
    ``--backend``, ``--workers`` and ``--ray-address``). ``name`` defaults to ``local``
    for one worker, ``process`` for more, and ``ray`` when ``ray_address`` is given."""
    global DEFAULT
    if name is None:
        name = "ray" if ray_address else ("process" if workers > 1 else "local")
    _check(name, workers, threads, ray_address)
    DEFAULT = BackendChoice(name, workers, threads, ray_address)
    return DEFAULT


def _check(name: str, workers: int, threads: int, ray_address: str | None) -> None:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if workers < 1 or threads < 1:
        raise ConfigError(f"--workers and threads must be at least 1, got {workers}, {threads}")
    if name == "local" and workers > 1:
        raise ConfigError(
            f"--workers {workers} needs --backend process or ray (local scores in-process)"
        )
    if ray_address and name != "ray":
        raise ConfigError(f"--ray-address needs --backend ray, not {name}")


def default_backend(task: PruningTask) -> Backend:
    """The backend :func:`set_default_backend` chose, for ``task``."""
    choice = DEFAULT
    return make_backend(
        choice.name,
        task,
        choice.workers,
        threads=choice.threads,
        ray_address=choice.ray_address,
    )


def make_backend(
    name: str,
    task: PruningTask,
    workers: int = 1,
    *,
    threads: int = 1,
    ray_address: str | None = None,
) -> Backend:
    """The backend called ``name`` (:data:`BACKENDS`) for ``task``.

    ``process`` and ``ray`` need the task's recipe (:attr:`PruningTask.recipe`, set by
    :func:`rlprune.load_task`; for :meth:`PruningTask.from_model` tasks the model, data and
    config are sent instead).
    """
    _check(name, workers, threads, ray_address)
    backend: Backend
    if name == "local":
        return InProcess(task)
    if name == "process":
        if default_start_method() == "fork":  # the child inherits the driver's task as is
            backend = ProcessPool(functools.partial(_same_task, task), workers, threads)
        else:
            backend = ProcessPool(task.recipe(), workers, threads)
    else:
        backend = RayActors(task.recipe(), workers, threads, ray_address)
    _LIVE.add(backend)
    return backend


_LIVE: weakref.WeakSet[Backend] = weakref.WeakSet()


def close_all() -> None:
    """Stop every backend's workers (the CLI calls it before it exits)."""
    for backend in list(_LIVE):
        backend.close()


def _same_task(task: PruningTask) -> PruningTask:
    return task
