"""The ``ray`` sampler: fans prompts out over N Ray actors, each hosting a star-kit sampler backend.

Each actor builds the backend (``hf`` by default, or ``vllm``, or any registered sampler) through the plugin
registry, on its own device or CPU share, with the backend's own options. Prompts are dealt to the actors balanced
by length (longest first, each to the least-loaded actor), in chunks, and the completions come back in the
caller's order. ``load(checkpoint)`` reaches every actor. ``address`` joins an existing cluster (``ray start
--head`` on one machine, ``ray start --address HEAD:6379`` on the others; every node needs star-kit installed and
the checkpoint path readable, e.g. a shared file system); without it a local Ray instance is started. An actor
that dies is started again on the current model and its unfinished chunks retried, at most ``max_restarts`` times
per call, then one clear error.

Ray is an optional extra: ``pip install 'star-kit[ray]'``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import sys
from typing import Any, Sequence

import star_kit
from star_kit.data import connect_problem
from star_kit.errors import StarKitError, did_you_mean, one_line
from star_kit.protocols import Advance
from star_kit.records import GenerationParams

INSTALL_HINT = "sampler 'ray' needs Ray: pip install 'star-kit[ray]'"


class SamplerActor:
    """One Ray actor: a star-kit sampler backend, built through the plugin registry inside the actor."""

    def __init__(self, backend: str, model: str, options: dict[str, Any], threads: int | None) -> None:
        from star_kit.cli_common import quiet_libraries
        from star_kit.registry import load_registry

        quiet_libraries()
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.pid = os.getpid()
        self.error: tuple[str, int] | None = None
        try:
            self.sampler = load_registry().create("samplers", backend, model, **options)
        except StarKitError as exc:  # a bad backend option: its own one line and exit code reach the driver
            self.sampler, self.error = None, (str(exc), exc.exit_code)

    def _backend(self):
        if self.sampler is None:  # its backend refused to start (a restarted actor too): that error, not None's
            raise StarKitError(*self.error)
        return self.sampler

    def generate(self, prompts: list[str], params: GenerationParams) -> list[list[str]]:
        return self._backend().generate(prompts, params)

    def load(self, model: str) -> int:
        self._backend().load(model)
        return self.pid

    def info(self) -> dict[str, Any]:
        import socket

        return {"pid": self.pid, "host": socket.gethostname(), "error": self.error}

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.close()


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray address ('10.0.0.5:6379', 'ray://head:10001', '[::1]:6379'), or None for one that
    names no endpoint ('auto', 'local': Ray finds the cluster itself)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(address if "://" in address else f"//{address}")
        return (parts.hostname, parts.port) if parts.hostname and parts.port else None
    except ValueError:  # a port out of range or not a number: Ray's own error says so
        return None


@contextlib.contextmanager
def _signal_handlers_kept():
    """``ray.init`` in the main thread sets SIGTERM to ``sys.exit``: the command's own handler (SIGTERM ends a run
    as Ctrl-C does, with its one line) is put back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)


class RaySampler:
    """Options: ``workers`` (actors, default 2), ``backend`` (the sampler each actor hosts: hf (default), vllm or
    any registered name), ``address`` (an existing Ray cluster: ``auto``, ``HOST:PORT`` or ``ray://HOST:10001``;
    default: start a local one), ``cpus_per_worker`` (default 1), ``gpus_per_worker`` (default 1 when the cluster
    has GPUs, else 0), ``chunk_size`` (prompts per task, the unit of progress and of retry; default 64),
    ``max_restarts`` (restarts of dead actors per generate call before giving up; default 2), ``start_timeout``
    (seconds the actors may take to be placed and load the model, default 900). Every other option is
    the backend's (``batch_size=16``, ``dtype=float32``, vLLM's ``tensor_parallel_size`` ...)."""

    #: what ``**backend_options`` takes, for ``star-kit plugins ray``
    passed_on_options = "the backend's options (star-kit plugins hf, or the backend named)"

    def __init__(
        self,
        model: str,
        workers: int = 2,
        backend: str = "hf",
        address: str | None = None,
        cpus_per_worker: float = 1,
        gpus_per_worker: float | None = None,
        chunk_size: int = 64,
        max_restarts: int = 2,
        start_timeout: float = 900,
        **backend_options: Any,
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise StarKitError(INSTALL_HINT, 2) from exc
        from star_kit.registry import load_registry

        self.check_options(load_registry(), model, workers=workers, backend=backend, address=address,
                           cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, chunk_size=chunk_size,
                           max_restarts=max_restarts, start_timeout=start_timeout, **backend_options)
        self.ray = ray
        self.started_ray = False
        self.actors: list[Any] = []
        joined = address or os.environ.get("RAY_ADDRESS")  # Ray itself reads RAY_ADDRESS when address is unset
        named = f"address={address}" if address else f"RAY_ADDRESS={joined}"
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address:
                kwargs["address"] = address
            endpoint = _host_port(joined) if joined else None
            problem = connect_problem(*endpoint, timeout=5.0) if endpoint else None
            if problem:  # Ray itself retries a dead address for minutes, printing its C++ warnings
                raise StarKitError(f"sampler 'ray': no Ray cluster to join at {named} ({problem}; start one with "
                                   f"`ray start --head`, or leave it unset for a local instance)", 2)
            try:
                with _signal_handlers_kept():
                    ray.init(**kwargs)
            except Exception as exc:  # ConnectionError and Ray's own errors (a token the cluster refuses ...)
                if joined:
                    raise StarKitError(f"sampler 'ray': joining the Ray cluster at {named} failed: "
                                       f"{one_line(exc)}", 2) from exc
                raise StarKitError(f"sampler 'ray': cannot start a local Ray instance: {one_line(exc)}") from exc
            self.started_ray = True
        if gpus_per_worker is None:
            gpus_per_worker = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        # Actors that do not fit would wait for resources: on a local instance forever (refused here); on a joined
        # cluster until nodes join (an autoscaling one) or start_timeout, said at once. Ray counts in 1/10000s.
        have = ray.cluster_resources()
        where = f"the Ray cluster at {named}" if joined else "this machine's Ray instance"
        for unit, each in (("CPU", cpus_per_worker), ("GPU", gpus_per_worker)):
            if each and round(workers * each, 4) > round(have.get(unit, 0), 4):
                short = (f"sampler 'ray': workers={workers} x {unit.lower()}s_per_worker={each} needs "
                         f"{workers * each:g} {unit}s; {where} has {have.get(unit, 0):g}")
                if not joined:
                    self.close()
                    raise StarKitError(short, 2)
                print(f"warning: {short} now: the actors wait for nodes to join (an autoscaling cluster) for at most "
                      f"start_timeout={start_timeout:g}s", file=sys.stderr, flush=True)
        self.backend, self.backend_options = backend, dict(backend_options)
        self.workers, self.chunk_size, self.max_restarts = workers, chunk_size, max_restarts
        self.actor_class = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)(SamplerActor)
        self.threads = max(1, int(cpus_per_worker)) if not gpus_per_worker else None
        self.model = model
        try:
            self.actors = [self._start() for _ in range(workers)]
            refs = [a.info.remote() for a in self.actors]
            _, waiting = ray.wait(refs, num_returns=len(refs), timeout=start_timeout)
            if waiting:  # placed nowhere (resources held by other jobs), or a model load that never ends
                free = ray.available_resources()
                raise StarKitError(f"sampler 'ray': {len(waiting)} of {workers} actors did not start within "
                                   f"start_timeout={start_timeout:g}s ({where} has {free.get('CPU', 0):g} CPUs and "
                                   f"{free.get('GPU', 0):g} GPUs free now); ask for fewer workers, or raise "
                                   f"start_timeout", 2)
            infos = ray.get(refs)
        except StarKitError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise StarKitError(f"sampler 'ray': starting {workers} '{backend}' actors failed: "
                               f"{one_line(exc)}") from exc
        failed = next((i["error"] for i in infos if i.get("error")), None)
        if failed:
            self.close()
            raise StarKitError(f"sampler 'ray': {failed[0]}", failed[1])
        hosts = sorted({i["host"] for i in infos})
        print(f"sampler 'ray': {workers} sampling actor{'s' if workers > 1 else ''} ('{backend}' backend, "
              f"{cpus_per_worker} CPU"
              f"{f', {gpus_per_worker} GPU' if gpus_per_worker else ''} each) on {len(hosts)} node"
              f"{'s' if len(hosts) > 1 else ''}: pids {', '.join(str(i['pid']) for i in infos)}",
              file=sys.stderr, flush=True)

    @staticmethod
    def outcome_options(registry: Any, options: dict[str, Any]) -> dict[str, Any]:
        """What a resumed run must keep: the backend and what its own ``outcome_options`` keep of its options; the
        actors' count, resources, chunking and restarts only place the work (a run may resume on a smaller
        cluster)."""
        own = ("workers", "cpus_per_worker", "gpus_per_worker", "chunk_size", "max_restarts", "start_timeout")
        backend = options.get("backend", "hf")
        theirs = {k: v for k, v in options.items() if k not in (*own, "backend", "address")}
        kept = registry.outcome("samplers", backend, theirs) if backend in registry.names("samplers") else theirs
        return {"backend": backend, **kept}

    @staticmethod
    def check_options(registry: Any, model: str, workers: int = 2, backend: str = "hf", address: str | None = None,
                      cpus_per_worker: float = 1, gpus_per_worker: float | None = None, chunk_size: int = 64,
                      max_restarts: int = 2, start_timeout: float = 900, **backend_options: Any) -> None:
        """The options' own checks, before any actor starts (the plugin registry calls it for ``--print-config``
        too: every option but these is the backend's, which its signature checks); one line on a bad one."""
        for key, value, low in (("workers", workers, 1), ("chunk_size", chunk_size, 1),
                                ("max_restarts", max_restarts, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise StarKitError(f"sampler 'ray': {key} must be an integer >= {low}, got {value!r}", 2)
        for key, value in (("cpus_per_worker", cpus_per_worker), ("gpus_per_worker", gpus_per_worker)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise StarKitError(f"sampler 'ray': {key} must be a number >= 0, got {value!r}", 2)
        if isinstance(start_timeout, bool) or not isinstance(start_timeout, (int, float)) or not start_timeout > 0:
            raise StarKitError(f"sampler 'ray': start_timeout must be a number of seconds > 0, got {start_timeout!r}",
                               2)
        if backend == "ray":
            raise StarKitError("sampler 'ray': backend cannot be ray itself", 2)
        backends = [n for n in registry.names("samplers") if n != "ray"]
        if backend not in backends:  # fails here, before any actor starts
            raise StarKitError(f"sampler 'ray': option backend={backend!r} is not a sampler (available: "
                               f"{', '.join(backends)}){did_you_mean(backend, backends)}", 2)
        own = [n for n in inspect.signature(RaySampler).parameters if n not in ("model", "backend_options")]
        try:
            theirs = list(inspect.signature(registry.get("samplers", backend).obj).parameters)
        except (TypeError, ValueError):
            theirs = []
        for key in backend_options:  # a misspelt option of ray's own (close to one of its, to none of the backend's)
            ours = did_you_mean(key, own)
            if ours and key not in own and not registry.accepts("samplers", backend, key) \
                    and not did_you_mean(key, theirs):
                raise StarKitError(f"sampler 'ray' has no option {key!r}{ours}; its options: "
                                   f"{', '.join(own)}, and the backend's ({backend!r})", 2)
        try:
            registry.check_options("samplers", backend, model, **backend_options)  # an unknown backend option
        except StarKitError as exc:
            if all(registry.accepts("samplers", backend, key) for key in backend_options):
                raise  # a bad value of one of the backend's options
            raise StarKitError(f"{exc} (through sampler 'ray', whose own options are {', '.join(own)})",
                               exc.exit_code) from exc  # the backend's options are listed; ray's are options too

    def _start(self):
        return self.actor_class.remote(self.backend, self.model, self.backend_options, self.threads)

    def generate(
        self, prompts: Sequence[str], params: GenerationParams, advance: Advance | None = None
    ) -> list[list[str]]:
        ray = self.ray
        if not prompts:
            return []
        shards = balance([len(p) for p in prompts], self.workers)
        # Numbered chunks per actor, in the order the actor runs them; a chunk's number gives it its own seed.
        chunks = [(w, shard[i : i + self.chunk_size]) for w, shard in enumerate(shards)
                  for i in range(0, len(shard), self.chunk_size)]
        results: list[list[str] | None] = [None] * len(prompts)
        restarts = 0
        pending: dict[Any, tuple[int, int, list[int]]] = {}  # ref -> (chunk number, worker, prompt indices)

        def submit(k: int, worker: int, chunk: list[int]) -> None:
            chunk_params = dataclasses.replace(params, seed=params.seed * 1_000_003 + k)
            ref = self.actors[worker].generate.remote([prompts[i] for i in chunk], chunk_params)
            pending[ref] = (k, worker, chunk)

        for k, (w, chunk) in enumerate(chunks):
            submit(k, w, chunk)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            k, worker, chunk = pending.pop(ready[0])
            try:
                outs = ray.get(ready[0])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                # The actor died: start a new one on the current model, resubmit everything it still owed.
                owed = [(k, chunk)]
                for r in [r for r, (_, w, _) in pending.items() if w == worker]:
                    j, _, c = pending.pop(r)
                    owed.append((j, c))
                restarts += 1
                if restarts > self.max_restarts:
                    raise StarKitError(f"sampler 'ray': actor {worker} died and {self.max_restarts} restarts did "
                                       f"not help; last error: {one_line(exc)}") from exc
                print(f"sampler 'ray': actor {worker} died ({one_line(exc)}); restarting it and retrying "
                      f"{sum(len(c) for _, c in owed)} prompts", file=sys.stderr, flush=True)
                try:
                    ray.kill(self.actors[worker])
                except Exception:
                    pass
                self.actors[worker] = self._start()
                for j, c in sorted(owed):
                    submit(j, worker, c)
                continue
            except ray.exceptions.RayTaskError as exc:  # the backend raised: its own error, one line
                raise StarKitError(f"sampler 'ray': backend '{self.backend}' failed in actor {worker}: "
                                   f"{one_line(exc.cause if getattr(exc, 'cause', None) else exc)}") from exc
            for i, out in zip(chunk, outs):
                results[i] = out
            if advance is not None:
                advance(len(chunk))
        return results  # type: ignore[return-value]

    def load(self, model: str) -> None:
        """Load ``model`` (a folder every node can read) into every actor."""
        self.model = model
        try:
            self.ray.get([a.load.remote(model) for a in self.actors])
        except Exception as exc:
            raise StarKitError(f"sampler 'ray': loading {model} into the actors failed: {one_line(exc)}") from exc

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:
                pass
        self.actors = []
        if self.started_ray and self.ray.is_initialized():
            self.ray.shutdown()
            self.started_ray = False


def balance(lengths: Sequence[int], workers: int) -> list[list[int]]:
    """Indices dealt to ``workers`` shards, longest first, each to the shard with the least total length so far;
    each shard keeps its indices longest first (as the backends batch them)."""
    import heapq

    heap = [(0, w) for w in range(workers)]
    shards: list[list[int]] = [[] for _ in range(workers)]
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        load, w = heapq.heappop(heap)
        shards[w].append(i)
        heapq.heappush(heap, (load + max(1, lengths[i]), w))
    return shards


@star_kit.hookimpl
def register_samplers(register):
    register("ray", RaySampler)
