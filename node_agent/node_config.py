"""Reading the ``node_configuration_payload_v1`` the orchestrator serves (docs/wire_contract.md#node-config).

Decoding is lenient as the contract asks (unknown keys ignored, absent or
null keys read as empty); whether the node can apply what it read is the
Node Manager's call (``version`` must be 1, a Worker API token must be there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from node_agent.client import json_object


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class NodeConfig:
    """The parts of the node configuration this node acts on."""

    version: Any
    config_version: str
    node_slug: str
    worker_token: str = field(repr=False)
    max_request_bytes: int | None = None
    max_job_timeout_seconds: int | None = None
    inference: dict[str, Any] = field(default_factory=dict)

    @property
    def supported_version(self) -> bool:
        return self.version == 1 and not isinstance(self.version, bool)

    @property
    def inference_enabled(self) -> bool:
        """The orchestrator asks this node to start inference (``inference_backend.enabled``)."""
        return bool(self.inference.get("enabled"))

    def backend_options(self) -> dict[str, object]:
        """What the instruction adds to a backend factory's options: ``selected_model``, ``env``."""
        options: dict[str, object] = {}
        model = _text(self.inference.get("selected_model"))
        if model:
            options["selected_model"] = model
        env = json_object(self.inference.get("env"))
        if env:
            options["env"] = {str(k): str(v) for k, v in env.items()}
        return options


def parse_node_config(payload: dict[str, Any]) -> NodeConfig:
    """The :class:`NodeConfig` of a decoded configuration payload."""
    constraints = json_object(payload.get("constraints"))
    return NodeConfig(
        version=payload.get("version"),
        config_version=_text(payload.get("config_version")),
        node_slug=_text(payload.get("node_slug")),
        worker_token=_text(json_object(payload.get("worker_api")).get("orchestrator_bearer_token")),
        max_request_bytes=_positive_int(constraints.get("max_request_bytes")),
        max_job_timeout_seconds=_positive_int(constraints.get("max_job_timeout_seconds")),
        inference=json_object(payload.get("inference_backend")),
    )
