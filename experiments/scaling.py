"""Candidate evaluations per second with the in-process default and with K workers.

    python experiments/scaling.py --env fmnist-resnet20 --evals 24 --runs 3
    python experiments/scaling.py --env fmnist-resnet20 --backends local,process:1,process:2,ray:2

Each configuration scores ``--evals`` distinct random channel configurations (random
search's proposals, new ones every run, so nothing comes from the cache) through
:meth:`PruningTask.prefetch` after its workers have started and built their task, and
reports the median evaluations per second over ``--runs`` runs. ``local`` is today's
default (one process, torch's default thread count); ``local:1`` is the same with one
thread; ``process:K`` and ``ray:K`` run K workers of one torch thread each.

It also measures what the driver pays per candidate (proposing it: an episode of env
steps; and one request's round trip to an idle worker with nothing to compute), which
bound how many workers one driver can keep busy: about
``seconds per evaluation / driver seconds per candidate``.
"""

from __future__ import annotations

import pickle
import statistics
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from rlprune.arguments import arg, parse
from rlprune.env.rollout import propose
from rlprune.errors import run_script
from rlprune.evaluation.task import PruningTask
from rlprune.presets.loader import load_env_config
from rlprune.presets.tasks import load_task
from rlprune.search.base import baseline_env
from rlprune.search.random_search import RandomPolicy


def proposals(task: PruningTask, n: int, seed: int) -> list[np.ndarray]:
    """``n`` random search proposals (distinct seeds give distinct configurations)."""
    env = baseline_env(task, 0.5)
    policy = RandomPolicy(seed)
    return [propose(policy, env, seed=seed * 1000 + i) for i in range(n)]


def rate(task: PruningTask, backend: str, evals: int, run: int) -> float:
    """Evaluations per second of one run of ``backend`` (``name`` or ``name:K``)."""
    name, _, k = backend.partition(":")
    workers = int(k or 1)
    task.reset_search()
    batch = proposals(task, evals, seed=run + 1)
    if name == "local":
        torch.set_num_threads(workers if k else DEFAULT_THREADS)
        task.close_backend()
        t0 = time.perf_counter()
        for channels in batch:
            task.evaluate(channels)
        return evals / (time.perf_counter() - t0)
    torch.set_num_threads(DEFAULT_THREADS)
    service = task.use_backend(name, workers)
    service.start()  # type: ignore[attr-defined]
    task.prefetch(proposals(task, workers, seed=10_000 + run))  # warm: first shapes, caches
    t0 = time.perf_counter()
    task.prefetch(batch)
    seconds = time.perf_counter() - t0
    task.close_backend()
    return evals / seconds


def round_trip(task: PruningTask) -> float:
    """Median seconds for a request that does nothing, to one warm worker process."""
    import concurrent.futures as cf
    import multiprocessing

    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        pool.submit(abs, 0).result()
        key = tuple(int(n) for n in task.analysis.channels)
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            pool.submit(len, key).result()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def round_trip_ray(task: PruningTask) -> float:
    """Median seconds for a do-nothing call to one warm Ray actor (local instance)."""
    import ray

    @ray.remote(num_cpus=1)
    class Echo:
        def size(self, key: tuple[int, ...]) -> int:
            return len(key)

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    actor = Echo.remote()  # type: ignore[attr-defined]
    key = tuple(int(n) for n in task.analysis.channels)
    ray.get(actor.size.remote(key))
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        ray.get(actor.size.remote(key))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


DEFAULT_THREADS = torch.get_num_threads()


@dataclass
class Args:
    """The measurement's arguments (``--flag-name`` for each field)."""

    env: str = arg("fmnist-resnet20", "preset name or YAML path")
    evals: int = arg(24, "evaluations timed per run")
    runs: int = arg(3, "runs per backend (median)")
    backends: str = arg(
        "local,local:1,process:1,process:2",
        "comma-separated name[:workers] (local, process, ray)",
    )


def main(argv: list[str] | None = None) -> int:
    """Time every backend, then what the driver pays per candidate."""
    args = parse(Args, argv, description=__doc__.splitlines()[0])
    warnings.simplefilter("ignore", UserWarning)
    task = load_task(load_env_config(args.env))
    print(
        f"{args.env}: {len(task.analysis.units)} units, val {task.val_size} images, "
        f"{args.evals} evaluations per run, median of {args.runs} runs, "
        f"{DEFAULT_THREADS} torch threads by default"
    )
    rates: dict[str, float] = {}
    for backend in args.backends.split(","):
        runs = [rate(task, backend, args.evals, run) for run in range(args.runs)]
        rates[backend] = statistics.median(runs)
        print(
            f"  {backend:<10} {rates[backend]:6.3f} evals/s  "
            f"(runs: {', '.join(f'{r:.3f}' for r in runs)})",
            flush=True,
        )
    for many, one in (("process:2", "process:1"), ("ray:2", "ray:1"), ("process:2", "local")):
        if many in rates and one in rates:
            print(f"  {many} / {one}: {rates[many] / rates[one]:.2f}x")
    t0 = time.perf_counter()
    proposals(task, 20, seed=99)
    propose_s = (time.perf_counter() - t0) / 20
    trip = round_trip(task)
    one_worker = [rates[b] for b in ("process:1", "ray:1", "local:1") if b in rates]
    # Seconds one single-threaded worker spends on one evaluation; without a
    # one-worker run, time one evaluation here.
    per_eval = 1.0 / one_worker[0] if one_worker else 1.0 / rate(task, "local:1", 2, 0)
    model_mb = len(pickle.dumps(task.model.state_dict())) / 1e6
    print(
        f"  driver per candidate: propose {propose_s * 1e3:.2f} ms, request round trip "
        f"{trip * 1e3:.2f} ms; one evaluation on one worker {per_eval:.2f} s; "
        f"model state {model_mb:.2f} MB (sent once per worker)"
    )
    if any(b.startswith("ray") for b in rates):
        trip = max(trip, round_trip_ray(task))
        print(f"  Ray actor call round trip {trip * 1e3:.2f} ms")
    print(
        f"  one driver keeps about {per_eval / (propose_s + trip):.0f} workers busy "
        "(seconds per evaluation / driver seconds per candidate)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
