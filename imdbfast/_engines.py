"""Where a sweep's models train: this process's threads, a Dask cluster or a Ray cluster.

Each engine is a generator of rows, in the order the models finish; closing it (the sweep
interrupted, or a model failed) cancels the models not yet finished. The data travel to a
cluster once (Dask: scattered to every worker; Ray: put in the object store), and every task
refers to them; a task sends back only its row (and, when asked, its pickled model).
"""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Iterator

from ._optional import require

NAMES = ("local", "dask", "ray")


def train_model(config: dict, opts: dict, *data) -> dict:
    """One model, as every engine runs it (a module-level function, so workers import it)."""
    from . import experiments

    return experiments.train_one(config, tuple(data), **opts)


def _task_name(sweep: str, config_key: str) -> str:
    return f"imdbfast-train-{sweep}-{hashlib.sha256(config_key.encode()).hexdigest()[:16]}"


def check(engine: str, cluster: Any) -> None:
    """The engine's extra and its cluster argument, checked before anything runs (the engines
    themselves only start on their first row)."""
    if engine == "local" and cluster is not None:
        raise ValueError("cluster: engine='local' trains in this process; give engine='dask' or 'ray'")
    if engine == "dask":
        distributed = require("distributed", "engine='dask'", "dask")
        if cluster is not None and not isinstance(cluster, (distributed.Client, str)):
            raise TypeError(f"cluster: expected a distributed.Client or an address string, got "
                            f"{type(cluster).__name__}")
    if engine == "ray":
        ray = require("ray", "engine='ray'", "ray")
        if cluster is not None and not isinstance(cluster, str):
            raise TypeError(f"cluster: expected a Ray address string (or None), got "
                            f"{type(cluster).__name__}")
        if cluster is not None and ray.is_initialized():
            raise ValueError("cluster: Ray is already initialised in this process; give "
                             "cluster=None to use it, or call ray.shutdown() first")


def local(todo: list[dict], data: tuple, opts: dict, workers: int, cluster: Any) -> Iterator[dict]:
    with ThreadPoolExecutor(max_workers=workers) as pool:  # the core releases the GIL
        futures = [pool.submit(train_model, c, opts, *data) for c in todo]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()


def dask(todo: list[dict], data: tuple, opts: dict, workers: int, cluster: Any) -> Iterator[dict]:
    """cluster: a ``distributed.Client``, a scheduler address ("tcp://host:8786"), or None for
    the client already running in this process. A worker lost mid-task is the scheduler's to
    retry (``distributed.scheduler.allowed-failures``); a model's own error is not retried."""
    import distributed  # (check() made sure it is there)

    own = None
    if isinstance(cluster, distributed.Client):
        client = cluster
    elif isinstance(cluster, str):
        client = own = distributed.Client(cluster)
    else:
        try:
            client = distributed.get_client()
        except ValueError:
            raise ValueError("cluster: engine='dask' needs a distributed.Client or a scheduler "
                             "address such as 'tcp://127.0.0.1:8786' (no client is running)") from None
    from . import experiments

    futures = []
    try:
        parts = client.scatter(list(data), broadcast=True, hash=False)  # once, to every worker
        sweep = uuid.uuid4().hex[:8]
        futures = [client.submit(train_model, c, opts, *parts, pure=False,
                                 key=_task_name(sweep, experiments.config_key(c))) for c in todo]
        for fut in distributed.as_completed(futures):
            yield fut.result()
    finally:
        if futures:
            client.cancel(futures)
        if own is not None:
            own.close()


_ray_task = None


def ray(todo: list[dict], data: tuple, opts: dict, workers: int, cluster: Any) -> Iterator[dict]:
    """cluster: a Ray address ("auto", "ray://host:10001") for ``ray.init``, or None: the Ray
    already initialised in this process, else ``ray.init()`` (RAY_ADDRESS, or a local Ray). Each
    task asks for as many CPUs as its model's threads (and a GPU for device != "cpu"); a worker
    lost mid-task is retried by Ray (max_retries=3), a model's own error is not."""
    import ray  # (check() made sure it is there)

    global _ray_task
    if not ray.is_initialized():
        ray.init(address=cluster)
    if _ray_task is None:
        _ray_task = ray.remote(max_retries=3, retry_exceptions=False)(train_model)
    refs = [ray.put(a) for a in data]  # once, into the object store
    # a GPU model asks Ray for a GPU (else Ray hides them all from the task)
    gpus = 0 if opts["device"] in ("cpu", None) else 1
    if gpus and not ray.cluster_resources().get("GPU", 0):  # the tasks would wait forever
        raise ValueError(f"device={opts['device']!r}: the Ray cluster has no GPU")
    train = _ray_task.options(num_cpus=opts["threads"], num_gpus=gpus)
    pending = [train.remote(c, opts, *refs) for c in todo]
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
    finally:
        for ref in pending:
            ray.cancel(ref)
