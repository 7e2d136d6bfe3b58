"""The runtime contract on the warm path: :class:`WarmPath` makes ``run`` take a warm container, as a node does.

A runtime with the optional :class:`~cynode_core.contract.WarmingRuntime`
runs the whole :class:`~cynode_core.testing.SandboxRuntimeContract` twice:
once as it is (cold starts) and once wrapped in :class:`WarmPath`, so every
outcome, limit and isolation case holds on a container started ahead::

    class TestMyRuntimeWarm(SandboxRuntimeContract):
        @pytest.fixture
        def runtime(self, my_runtime):
            return WarmPath(my_runtime)

``WarmPath.run`` starts a warm container from the spec itself (its image,
limits and workspace, no command), then hands it the job with ``run_warm``;
a spec no warm container fits (``warm_key`` is None) or one whose warm
container cannot be started (a missing image) runs cold, as on a node.
"""

from __future__ import annotations

import dataclasses
import uuid

from cynode_core.contract import (
    LeftoverJob,
    RuntimeUnavailable,
    SandboxOutcome,
    SandboxSpec,
    SweepingRuntime,
    WarmingRuntime,
    warm_key,
)


class WarmPath:
    """A runtime whose ``run`` goes through a warm container; ``warm_runs`` counts the jobs that did."""

    def __init__(self, runtime: WarmingRuntime) -> None:
        if not isinstance(runtime, WarmingRuntime):
            raise TypeError(f"{runtime!r} cannot start warm containers")
        self.inner = runtime
        self.name = runtime.name
        self.warm_runs = 0

    def run(self, spec: SandboxSpec) -> SandboxOutcome:
        if warm_key(spec) is None:
            return self.inner.run(spec)
        template = dataclasses.replace(
            spec, job_id=f"warm-{uuid.uuid4()}", task_id="", command=(), env={}, on_output=None, on_exit=None
        )
        try:
            sandbox = self.inner.prestart(template)
        except RuntimeUnavailable:
            return self.inner.run(spec)
        self.warm_runs += 1
        return self.inner.run_warm(sandbox, spec)

    def check(self, image: str) -> None:
        self.inner.check(image)

    def cancel(self, job_id: str) -> bool:
        return self.inner.cancel(job_id)

    def sweep(self, owner: str) -> list[LeftoverJob]:
        if not isinstance(self.inner, SweepingRuntime):
            raise NotImplementedError(f"{self.name!r} has no sweep")
        return self.inner.sweep(owner)

    def version(self) -> str:
        return self.inner.version()

    def close(self) -> None:
        """The wrapped runtime is the caller's to close."""
