"""A node whose JWT expired registers again and takes the rotated Worker API token."""

from __future__ import annotations

import pytest

from node_agent.readiness import Readiness
from node_agent.worker_api import create_worker_app


def test_worker_api_token_can_be_rotated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from node_agent.metrics import NodeMetrics

    class Limits:
        max_request_bytes = 1024

    class Idle:
        limits = Limits()
        metrics = NodeMetrics()

    app = create_worker_app(Idle(), bearer_token="old-token", readiness=Readiness())  # type: ignore[arg-type]
    client = app.test_client()
    assert (
        client.post("/v1/worker/jobs:run", headers={"Authorization": "Bearer old-token"}, data="{").status_code == 400
    )
    app.extensions["cynode_worker"]["set_token"]("new-token")
    assert (
        client.post("/v1/worker/jobs:run", headers={"Authorization": "Bearer old-token"}, data="{").status_code == 401
    )
    assert (
        client.post("/v1/worker/jobs:run", headers={"Authorization": "Bearer new-token"}, data="{").status_code == 400
    )
    with pytest.raises(ValueError):
        app.extensions["cynode_worker"]["set_token"]("")
