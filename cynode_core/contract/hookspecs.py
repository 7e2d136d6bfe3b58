"""The plugin contract: every hook cynode calls (the value types they pass are in ``values``).

A plugin implements any of these with ``@cynode_core.hookimpl`` and is found
through the ``cynode`` entry-point group (see ``docs/hooks.md`` and
``docs/plugins.md``). Hooks come in five families: authentication,
scheduling, sandbox runtimes, inference backends and blob stores, plus
task events.
"""

from __future__ import annotations

from collections.abc import Sequence

from cynode_core import hookspec
from cynode_core.contract.blobs import RegisterBlobStore
from cynode_core.contract.values import (
    Identity,
    InferenceInfo,
    JobInfo,
    NodeCandidate,
    RegisterBackend,
    RegisterRuntime,
    TaskEvent,
)

# --------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def cynode_authenticate(handle: str, password: str) -> Identity | None:
    """Check a handle and password at login.

    :param handle: the handle the client sent, as sent (handles are case-sensitive).
    :param password: the password the client sent.
    :returns: an :class:`Identity` when this plugin vouches for the caller,
        or ``None`` to defer to the next plugin. The first non-``None``
        answer wins; when every plugin defers, login fails with 401.
    Called by: the gateway's ``POST /v1/auth/login``. Default plugin: local
    accounts (argon2id hashes in ``password_credentials``).
    """


# --------------------------------------------------------------------------
# Scheduling
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def cynode_select_node(job: JobInfo, candidates: Sequence[NodeCandidate]) -> NodeCandidate | None:
    """Choose the node a queued job is sent to.

    :param job: the job being placed.
    :param candidates: every dispatchable node (active, config acked
        ``applied`` for its current version, Worker API URL and token known),
        ordered by ``node_slug``, with its slot count and running jobs.
    :returns: one of ``candidates``, or ``None`` to defer. When every plugin
        defers the job stays queued and is tried again later.
    Called by: the orchestrator's two-step claim (the ``cynode_claim_job``
    hook's built-in ``two-step-claim`` plugin), once per picked job. Default
    plugin: ``least-loaded``, the candidate with the most free slots; while it
    is the only implementation, its own ``cynode_claim_job`` makes the same
    choice inside the claim statement.
    """


@hookspec(firstresult=True)
def cynode_select_inference_node(request: InferenceInfo, candidates: Sequence[NodeCandidate]) -> NodeCandidate | None:
    """Choose the node whose model answers a chat request.

    :param request: the model asked for, the user, the context size and the
        chat calls this orchestrator has open per node.
    :param candidates: the dispatchable nodes whose latest capability report
        lists the model and whose Worker API serves ``inference:chat``,
        ordered by ``node_slug``; a node that just failed this request is
        left out of the next ask.
    :returns: one of ``candidates``, or ``None`` to refuse (the request then
        fails with 503 ``model_unavailable``).
    Called by: the chat surface, once per attempt of a direct-model or
    ``cynodeai.pm`` turn. Default plugin: ``least-loaded``, the candidate with
    the fewest open chat calls, then the most free job slots, then the first
    by slug.
    """


# --------------------------------------------------------------------------
# Sandbox runtimes
# --------------------------------------------------------------------------


@hookspec
def cynode_register_sandbox_runtimes(register: RegisterRuntime) -> None:
    """Offer sandbox runtimes to the node agent.

    :param register: call ``register(name, factory)`` once per runtime;
        ``factory(options)`` builds a :class:`SandboxRuntime` from the
        node's ``sandbox_*`` settings (a mapping of plain values).
    Called by: the node agent at start; the configured ``sandbox_runtime``
    name picks one. Default plugin: ``podman`` (distribution cynode-podman).
    """


# --------------------------------------------------------------------------
# Inference backends
# --------------------------------------------------------------------------


@hookspec
def cynode_register_inference_backends(register: RegisterBackend) -> None:
    """Offer inference backends to the node agent.

    :param register: call ``register(name, factory)`` once per backend;
        ``factory(options)`` builds an :class:`InferenceBackend` from the
        node's ``inference_*`` settings.
    Called by: the node agent at start, before it acks its configuration;
    the configured ``inference_backend`` name picks one (``none`` must be
    set explicitly to run without). Shipped plugins: ``ollama``, ``llamacpp``.
    """


# --------------------------------------------------------------------------
# Blob stores
# --------------------------------------------------------------------------


@hookspec
def cynode_register_blob_stores(register: RegisterBlobStore) -> None:
    """Offer blob stores for artifact content to the orchestrator.

    :param register: call ``register(name, factory)`` once per store;
        ``factory(options)`` builds a :class:`~cynode_core.contract.blobs.BlobStore`
        from plain values (``database_url``, ``home``, ``artifact_dir``).
    Called by: the orchestrator when it first needs a store. New blobs go to
    the store ``artifact_store`` names (default ``pg``, built in); an
    artifact is always read from the store that wrote it. Shipped plugin:
    ``fs`` (distribution cynode-fsstore).
    """


# --------------------------------------------------------------------------
# Task events
# --------------------------------------------------------------------------


@hookspec
def cynode_task_finished(task: TaskEvent) -> None:
    """Be told that a task reached a terminal status.

    :param task: the task id, its final API status and its owner.
    :returns: nothing; exceptions are logged and swallowed so a plugin
        cannot break dispatch.
    Called by: the orchestrator (``services/task_events.py``) after the
    dispatcher stores a terminal result, after a lease runs out of attempts,
    and after a cancel, each time after the commit.
    """
