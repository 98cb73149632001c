"""Where sweep tasks run: one interface, two executors.

`SequentialExecutor` runs the tasks one after another in this process. `RayExecutor` runs each task as a
Ray task on a local Ray (started here, limited to this machine's cores) or on an existing cluster
(`address`, or `RAY_ADDRESS`): one core and a memory reservation per task, a fresh worker process per task
(`max_calls=1`: TensorFlow's memory goes back to the system when the task ends), no retries (a failed
candidate is reported, not repeated). Ray is an optional extra (`pip install 'edgemnv2[scale]'`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

from edgemnv2.errors import InputError
from edgemnv2.sweep import Executor, Task, run_task

EXECUTORS = ("auto", "ray", "sequential")
# Memory one task reserves on a Ray node, from the peak RSS every result records: 0.97 GiB for 0.35/96 (12 M MACs,
# 4 calibration / 3 validation images), 1.66 GiB for 1.0/192 (221 M MACs) and 2.02 GiB for 1.0/224 (301 M MACs,
# both 100 / 300 images). A base for TensorFlow + Keras + the converter plus 3.6 bytes per multiply-accumulate
# reserves 17%, 11% and 4% more than those.
TASK_MEMORY_BASE = int(1.1 * 2**30)
TASK_MEMORY_PER_MAC = 3.6
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20   # results are a few MB each


class SequentialExecutor:
    """One task after another in this process (TensorFlow is imported by the first one)."""

    name = "sequential"

    def __init__(self, notes: tuple[str, ...] = ()) -> None:
        self.notes = notes

    def run(self, tasks: list[Task]) -> Iterator[tuple[Task, dict[str, Any]]]:
        for task in tasks:
            yield task, run_task(task)


def task_memory_bytes(task: Task) -> int:
    """The memory a task reserves: a base for TensorFlow plus the variant's activation volume."""
    from edgemnv2.profile.cost import graph_costs
    from edgemnv2.profile.spec import mobilenet_v2_graph

    graph = mobilenet_v2_graph(task.candidate.alpha, task.candidate.resolution)
    macs = sum(c.macs for c in graph_costs(graph))
    return int(TASK_MEMORY_BASE + TASK_MEMORY_PER_MAC * macs)


class RayExecutor:
    """Each task a Ray task: local Ray by default, an existing cluster with `address`."""

    def __init__(self, address: str | None = None) -> None:
        if importlib.util.find_spec("ray") is None:
            raise InputError("Ray is not installed: pip install 'edgemnv2[scale]' (or run with --executor sequential)")
        self.address = address
        self.name = f"ray ({address})" if address else "ray (local)"
        self.notes: tuple[str, ...] = ()

    def _connect(self) -> bool:
        """Start or join Ray; True when this call started it (and must shut it down)."""
        import logging

        import ray

        if ray.is_initialized():
            return False
        common = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
        try:
            if self.address:
                ray.init(address=self.address, **common)
            else:
                ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES, **common)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError or a bare Exception (timeouts)
            where = self.address or "a local Ray"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot start or reach {where}: {first[:200]}") from None
        return True

    def run(self, tasks: list[Task]) -> Iterator[tuple[Task, dict[str, Any]]]:
        import ray

        started_here = self._connect()
        refs: dict[Any, Task] = {}
        try:
            resources = ray.cluster_resources()
            cpus = int(resources.get("CPU", 1))
            # never ask more than the largest node has, or the task would wait forever as infeasible
            largest = max((n.get("Resources", {}).get("memory", 0) for n in ray.nodes() if n.get("Alive")), default=0)
            remote = ray.remote(num_cpus=1, max_calls=1, max_retries=0)(run_task)
            for task in tasks:
                memory = task_memory_bytes(task)
                if largest:
                    memory = min(memory, int(largest))
                refs[remote.options(memory=memory).remote(task, threads=1)] = task
            self.notes = (f"{len(tasks)} task(s) on {self.name}: {cpus} CPU(s), {len(ray.nodes())} node(s), "
                          "one core and one fresh worker per task",)
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    task = refs.pop(ref)
                    try:
                        out = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # worker died (out of memory, killed), task crashed
                        lines = [l for l in str(exc).splitlines() if l.strip()]
                        out = {"error": f"Ray task failed: {(lines[-1] if lines else type(exc).__name__)[:300]}"}
                    yield task, out
        finally:
            for ref in refs:  # only when the caller stopped early (Ctrl-C): do not leave tasks running
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()


def choose(kind: str = "auto", address: str | None = None) -> Executor:
    """The executor for `--executor`: auto = Ray when installed (local or `address`), else sequential."""
    if kind not in EXECUTORS:
        raise InputError(f"executor {kind!r} is not known; choose from {', '.join(EXECUTORS)}")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if kind == "sequential":
        if address:
            raise InputError("--ray-address needs the Ray executor, not --executor sequential")
        return SequentialExecutor()
    if kind == "auto" and importlib.util.find_spec("ray") is None:
        if address:
            raise InputError(f"--ray-address {address} needs Ray: pip install 'edgemnv2[scale]'")
        return SequentialExecutor(("Ray is not installed (pip install 'edgemnv2[scale]'): candidates run one after "
                                   "another in this process, with the same cache",))
    return RayExecutor(address)
