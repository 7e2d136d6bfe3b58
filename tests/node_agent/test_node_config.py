"""Reading node_configuration_payload_v1: lenient decoding, what the node acts on.

See docs/wire_contract.md#node-config.
"""

from __future__ import annotations

from node_agent.node_config import parse_node_config


def test_the_contract_example_is_read() -> None:
    config = parse_node_config(
        {
            "version": 1,
            "config_version": "01JMCZ8X4Q0C6V7Y5B2N3K9T1R",
            "issued_at": "2026-02-16T12:00:05Z",
            "node_slug": "node-01",
            "orchestrator": {"base_url": "http://localhost:12082", "endpoints": {}},
            "model_cache": {"cache_url": ""},
            "worker_api": {"orchestrator_bearer_token": "dev-token"},
            "inference_backend": {
                "variant": "cpu",
                "port": 11434,
                "selected_model": "qwen3:8b",
                "env": {"OLLAMA_CONTEXT_LENGTH": "8192", "OLLAMA_NUM_CTX": "8192"},
            },
            "managed_services": {"services": []},  # Phase 2: accepted, ignored
            "constraints": {"max_request_bytes": 4096, "max_job_timeout_seconds": 600},
        }
    )
    assert config.supported_version
    assert (config.config_version, config.node_slug, config.worker_token) == (
        "01JMCZ8X4Q0C6V7Y5B2N3K9T1R",
        "node-01",
        "dev-token",
    )
    assert (config.max_request_bytes, config.max_job_timeout_seconds) == (4096, 600)
    assert config.inference_enabled is False  # "enabled" absent reads as false
    assert config.backend_options() == {
        "selected_model": "qwen3:8b",
        "env": {"OLLAMA_CONTEXT_LENGTH": "8192", "OLLAMA_NUM_CTX": "8192"},
    }
    assert "dev-token" not in repr(config)


def test_absent_null_and_odd_values_read_as_empty() -> None:
    config = parse_node_config(
        {
            "version": 2,
            "config_version": 1,
            "worker_api": None,
            "constraints": {"max_request_bytes": -5, "max_job_timeout_seconds": True},
            "inference_backend": {"enabled": True},
        }
    )
    assert not config.supported_version
    assert (config.config_version, config.worker_token) == ("", "")
    assert (config.max_request_bytes, config.max_job_timeout_seconds) == (None, None)
    assert config.inference_enabled and config.backend_options() == {}
    assert not parse_node_config({"version": True}).supported_version
