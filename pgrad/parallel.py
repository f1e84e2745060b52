"""A small pool of stateful workers that run many tasks against one shared payload.

What ARS needs, and what later multi-seed or tuning code can reuse: ``K`` long-lived workers,
each built once by a picklable ``factory`` (so each owns its own environments), and a
:meth:`WorkerPool.map` that sends one ``payload`` (for ARS: the current weights and normaliser
statistics) to every worker and then hands out ``tasks`` (small plain data, e.g. a direction
index) one at a time to whichever worker is free. Results come back in task order, whatever
worker ran them and in whatever order they finished, so a task whose result depends only on
``(payload, task)`` gives the same answer on every backend and for every number of workers.

Backends:

- ``"local"`` with ``n_workers >= 1``: ``spawn``-ed processes on this machine, one pipe each;
- ``"local"`` with ``n_workers == 0``: the tasks run in the calling process (no subprocess; for
  tests, debugging, and env instances that cannot be sent to another process);
- ``"ray"``: the same worker objects as Ray actors on whatever cluster ``ray.init()`` reaches
  (a local one if none is running). Ray is imported only here and only then.

A worker that dies (killed, out of memory, a crash in native code) makes :meth:`map` raise
:class:`WorkerError` naming the worker; the pool never waits for a result that cannot come.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from pgrad.errors import ConfigError, TrainingError

BACKENDS = ("local", "ray")


class WorkerError(TrainingError):
    """A worker died or raised while running a task (a failure during training: exit status 1)."""


class Worker(Protocol):
    """What a ``factory`` builds: called with the current payload and one task."""

    def __call__(self, payload: Any, task: Any) -> Any: ...


# A multi-seed run that trains k seeds at once in its own pool gives each seed's process a
# k-th of the cores (share_cores); without it every seed would start one rollout worker per core,
# k times more processes than cores.
_core_share: int | None = None


def share_cores(n_cores: int) -> None:
    """Let :func:`default_workers` count only ``n_cores`` cores in this process (>= 1)."""
    global _core_share
    _core_share = max(1, int(n_cores))


def available_cores() -> int:
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Worker processes to use when not told: one per core this process may use (its share of
    the cores when it is one of several seeds trained at once, see :func:`share_cores`)."""
    cores = available_cores()
    return cores if _core_share is None else min(cores, _core_share)


def make_pool(factory: Callable[[], Worker], n_workers: int | None = None, backend: str = "local") -> WorkerPool:
    """Start a pool of ``n_workers`` workers built by ``factory`` (None: one per core)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    if n_workers is not None and n_workers < 0:
        raise ConfigError(f"n_workers={n_workers} must be >= 0 (0: run in this process)")
    if backend == "ray":
        return RayPool(factory, n_workers)
    if n_workers == 0:
        return InProcessPool(factory)
    return ProcessPool(factory, n_workers if n_workers is not None else default_workers())


class WorkerPool:
    """Common interface of the backends."""

    n_workers: int

    def map(self, payload: Any, tasks: Sequence[Any]) -> list[Any]:
        """Run every task against ``payload``; return the results in task order."""
        raise NotImplementedError

    def worker_pids(self) -> list[int | None]:
        """Process ids of the workers (None where not known), e.g. to watch or kill one in a test."""
        return []

    def close(self) -> None:
        """Stop the workers; safe to call twice."""

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class InProcessPool(WorkerPool):
    """``n_workers=0``: one worker object in the calling process."""

    def __init__(self, factory: Callable[[], Worker]) -> None:
        self.n_workers = 0
        self.worker = factory()

    def map(self, payload: Any, tasks: Sequence[Any]) -> list[Any]:
        return [self.worker(payload, task) for task in tasks]

    def close(self) -> None:
        closer = getattr(self.worker, "close", None)
        if closer is not None:
            closer()


def _worker_loop(connection: Connection, factory: Callable[[], Worker]) -> None:
    """Body of a local worker process: build the worker, then serve messages until told to stop."""
    import torch

    torch.set_num_threads(1)
    # The parent handles Ctrl-C and stops the workers itself; a worker printing a traceback of
    # its own at the same moment would only bury the parent's message.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        worker = factory()
    except Exception as exc:  # reported to the parent, which raises it there
        connection.send(("error", None, f"{type(exc).__name__}: {exc}"))
        return
    connection.send(("ready", None, None))
    payload = None
    while True:
        try:
            kind, index, body = connection.recv()
        except (EOFError, OSError):  # the parent went away
            return
        if kind == "payload":
            payload = body
        elif kind == "task":
            try:
                connection.send(("ok", index, worker(payload, body)))
            except Exception as exc:
                connection.send(("error", index, f"{type(exc).__name__}: {exc}"))
        else:  # "close"
            closer = getattr(worker, "close", None)
            if closer is not None:
                closer()
            return


def _death_text(exitcode: int | None) -> str:
    if exitcode is None:
        return "closed its pipe"
    if exitcode < 0:
        try:
            return f"was killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


class _SeparateWorkersPool(WorkerPool):
    """Backends whose workers live elsewhere (processes, Ray actors) and can die under us."""

    closed: bool

    def map(self, payload: Any, tasks: Sequence[Any]) -> list[Any]:
        if self.closed:
            raise WorkerError("the worker pool is closed")
        try:
            return self._map(payload, tasks)
        except BaseException:
            self.close()  # a pool that lost a worker (or was interrupted) is not reused
            raise

    def _map(self, payload: Any, tasks: Sequence[Any]) -> list[Any]:
        raise NotImplementedError


class ProcessPool(_SeparateWorkersPool):
    """``n_workers`` spawned processes on this machine, each serving tasks over its own pipe."""

    def __init__(self, factory: Callable[[], Worker], n_workers: int) -> None:
        context = get_context("spawn")  # fork would copy the parent's torch threads and envs
        self.n_workers = n_workers
        self.connections: list[Connection] = []
        self.processes = []
        self.closed = False
        for index in range(n_workers):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_worker_loop, args=(child_end, factory), daemon=True, name=f"pgrad-worker-{index}"
            )
            process.start()
            child_end.close()
            self.connections.append(parent_end)
            self.processes.append(process)
        try:
            for index in range(n_workers):
                kind, _, body = self._receive(
                    index, "while starting (a script using spawn needs `if __name__ == '__main__':`)"
                )
                if kind == "error":
                    raise WorkerError(f"worker {index} could not start: {body}")
        except BaseException:
            self.close()
            raise

    def worker_pids(self) -> list[int | None]:
        return [p.pid for p in self.processes]

    def _dead(self, index: int, doing: str = "while running a task") -> WorkerError:
        process = self.processes[index]
        process.join(timeout=1.0)
        return WorkerError(f"worker {index} (pid {process.pid}) {_death_text(process.exitcode)} {doing}")

    def _receive(self, index: int, doing: str) -> tuple[str, Any, Any]:
        connection, process = self.connections[index], self.processes[index]
        # Wait on the pipe and the process together: a dead worker never answers, and its
        # sentinel is what tells us so instead of blocking forever.
        while True:
            ready = wait([connection, process.sentinel])
            if connection in ready:
                try:
                    return connection.recv()
                except (EOFError, OSError):
                    raise self._dead(index, doing) from None
            if not connection.poll():
                raise self._dead(index, doing)

    def _send(self, index: int, message: tuple[str, Any, Any]) -> None:
        try:
            self.connections[index].send(message)
        except (BrokenPipeError, OSError):
            raise self._dead(index) from None

    def _map(self, payload: Any, tasks: Sequence[Any]) -> list[Any]:
        for index in range(self.n_workers):
            self._send(index, ("payload", None, payload))
        results: list[Any] = [None] * len(tasks)
        next_task = 0
        running: dict[int, int] = {}  # worker index -> task index
        for index in range(min(self.n_workers, len(tasks))):
            self._send(index, ("task", next_task, tasks[next_task]))
            running[index] = next_task
            next_task += 1
        while running:
            watched = {}
            for index in range(self.n_workers):
                watched[self.connections[index]] = index
                watched[self.processes[index].sentinel] = index  # idle workers may die too
            for handle in wait(list(watched)):
                index = watched[handle]
                if handle is not self.connections[index]:
                    if not self.connections[index].poll():
                        raise self._dead(index)
                    continue  # its last message is still in the pipe; read it first
                try:
                    kind, task_index, body = self.connections[index].recv()
                except (EOFError, OSError):
                    raise self._dead(index) from None
                if kind == "error":
                    raise WorkerError(f"worker {index} failed on task {task_index}: {body}")
                results[task_index] = body
                del running[index]
                if next_task < len(tasks):
                    self._send(index, ("task", next_task, tasks[next_task]))
                    running[index] = next_task
                    next_task += 1
        return results

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for connection, process in zip(self.connections, self.processes):
            if process.is_alive():
                try:
                    connection.send(("close", None, None))
                except (BrokenPipeError, OSError):
                    pass
        for connection, process in zip(self.connections, self.processes):
            process.join(timeout=2.0)
            if process.is_alive():
                process.terminate()
                process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
                process.join()
            connection.close()


class _RayWorker:
    """The Ray actor: holds one worker object built by the factory on the actor's node."""

    def __init__(self, factory: Callable[[], Worker]) -> None:
        import torch

        torch.set_num_threads(1)
        self.worker = factory()

    def run(self, payload: Any, task: Any) -> Any:
        return self.worker(payload, task)

    def pid(self) -> int:
        return os.getpid()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'pgrad[ray]' (or use --backend local)") from None
    return ray


# How long to wait for a TCP answer from the cluster RAY_ADDRESS names before calling it unreachable:
# ray.init itself retries for minutes (5.5 measured here) before raising a ConnectionError.
RAY_CONNECT_TIMEOUT_SECONDS = 10.0


def connect_ray(ray: Any, **init_kwargs: Any) -> None:
    """``ray.init`` unless Ray is already initialised, with a one-line ConfigError (exit status 2)
    when the cluster ``RAY_ADDRESS`` names does not answer, within seconds rather than minutes."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    host_port = (address or "").removeprefix("ray://")
    if ":" in host_port and address not in ("auto", "local"):
        host, _, port = host_port.rpartition(":")
        import socket

        try:
            socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_SECONDS).close()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ConfigError(
                f"cannot reach the Ray cluster at {address} (RAY_ADDRESS): {reason}; start it there with "
                "`ray start --head`, or unset RAY_ADDRESS to run on a local Ray"
            ) from None
    try:
        ray.init(address=address, **init_kwargs)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot start or join a Ray cluster ({address or 'local'}): {first_line}") from None


class RayPool(_SeparateWorkersPool):
    """Workers as Ray actors (one CPU each) on the cluster ``ray.init()`` reaches.

    If Ray is already initialised (a test or a user script called ``ray.init(...)``) that
    session is used; otherwise ``ray.init()`` connects to the cluster named by ``RAY_ADDRESS``
    or starts a local one. ``n_workers=None`` means one actor per CPU the cluster reports.
    """

    def __init__(self, factory: Callable[[], Worker], n_workers: int | None) -> None:
        ray = _import_ray()
        self.ray = ray
        connect_ray(ray, log_to_driver=False)
        if n_workers is None or n_workers == 0:
            n_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.n_workers = n_workers
        actor_class = ray.remote(num_cpus=1)(_RayWorker)
        self.actors = [actor_class.remote(factory) for _ in range(n_workers)]
        self.closed = False
        try:
            self.pids = self._get(0, [actor.pid.remote() for actor in self.actors], "could not start")
        except BaseException:
            self.close()
            raise

    def _get(self, index: int, refs: Any, doing: str) -> Any:
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayActorError as exc:
            raise WorkerError(f"Ray worker {index} died: {str(exc).strip().splitlines()[0].rstrip('.')}") from None
        except self.ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            raise WorkerError(f"Ray worker {index} {doing}: {type(cause).__name__}: {cause}") from None

    def worker_pids(self) -> list[int | None]:
        return list(self.pids)

    def _map(self, payload: Any, tasks: Sequence[Any]) -> list[Any]:
        ray = self.ray
        payload_ref = ray.put(payload)  # sent to each node once, not once per task
        results: list[Any] = [None] * len(tasks)
        next_task = 0
        running: dict[Any, tuple[int, int]] = {}  # object ref -> (worker index, task index)

        def submit(worker_index: int) -> None:
            nonlocal next_task
            ref = self.actors[worker_index].run.remote(payload_ref, tasks[next_task])
            running[ref] = (worker_index, next_task)
            next_task += 1

        for worker_index in range(min(self.n_workers, len(tasks))):
            submit(worker_index)
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            worker_index, task_index = running.pop(done[0])
            results[task_index] = self._get(worker_index, done[0], f"failed on task {task_index}")
            if next_task < len(tasks):
                submit(worker_index)
        return results

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # already dead
                pass
