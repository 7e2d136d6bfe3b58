"""Settings: defaults < YAML file (CYNODE_CONFIG) < environment, strict parsing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cynode_core.orchestrator.settings import OrchestratorSettings
from cynode_core.settings import (
    ConfigError,
    load_settings,
    parse_bool,
    parse_duration,
    parse_int,
    parse_listen,
    parse_optional_str,
    parse_path,
    parse_positive_int,
    parse_str,
)
from node_agent.settings import NodeSettings

LONG_SECRET = "s" * 40


def yaml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cynode.yaml"
    path.write_text(text)
    return path


def orch(environ: dict[str, str] | None = None, **kwargs: Any) -> OrchestratorSettings:
    return load_settings(OrchestratorSettings, environ=environ or {}, **kwargs)


# -- layering ----------------------------------------------------------------


def test_defaults() -> None:
    s = orch()
    assert (s.gateway_listen, s.control_listen) == ("127.0.0.1:12080", "127.0.0.1:12082")
    assert (s.access_token_ttl, s.refresh_token_ttl, s.node_token_ttl) == (900.0, 604800.0, 86400.0)
    assert s.max_request_bytes == 10 * 1024 * 1024 and s.login_rate_per_minute == 60
    assert s.jwt_secret is None and s.node_psk is None and s.admin_password is None and s.database_url is None
    assert s.disable_plugins == [] and s.dispatcher_enabled is True


def test_yaml_overrides_defaults_and_env_overrides_yaml(tmp_path: Path) -> None:
    path = yaml_file(
        tmp_path, "access_token_ttl: 10m\nrefresh_token_ttl: 2h\ngateway_listen: ':9000'\ndisable_plugins: [a, b]\n"
    )
    from_file = orch({"CYNODE_CONFIG": str(path)})
    assert (from_file.access_token_ttl, from_file.refresh_token_ttl) == (600.0, 7200.0)
    assert from_file.gateway_listen == "0.0.0.0:9000"
    assert from_file.disable_plugins == ["a", "b"]
    assert from_file.node_token_ttl == 86400.0  # untouched: still the default

    both = orch({"CYNODE_CONFIG": str(path), "CYNODE_ACCESS_TOKEN_TTL": "5m", "CYNODE_DISABLE_PLUGINS": "c"})
    assert both.access_token_ttl == 300.0 and both.refresh_token_ttl == 7200.0 and both.disable_plugins == ["c"]


def test_an_upstream_alias_in_the_environment_overrides_yaml(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "access_token_ttl: 10m\n")
    assert orch({"CYNODE_CONFIG": str(path), "JWT_ACCESS_DURATION": "20m"}).access_token_ttl == 1200.0


def test_config_file_argument_and_overrides(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "login_rate_per_minute: 5\n")
    s = load_settings(
        OrchestratorSettings,
        environ={"CYNODE_LOGIN_RATE_PER_MINUTE": "7"},
        config_file=path,
        overrides={"login_handle_failures": 3},
    )
    assert (s.login_rate_per_minute, s.login_handle_failures) == (7, 3)


def test_an_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "access_token_ttl: 10m\n")
    assert orch({"CYNODE_CONFIG": str(path), "CYNODE_ACCESS_TOKEN_TTL": ""}).access_token_ttl == 600.0


# -- upstream aliases ----------------------------------------------------------


def _samples(f: dataclasses.Field) -> tuple[str, Any, str, Any]:  # type: ignore[type-arg]
    """Two valid raw values for a field and what each parses to."""
    parse: Callable[[Any], Any] = f.metadata["parse"]
    if f.metadata.get("alias_parse"):
        return "3", 3 * 1024 * 1024, "4", 4  # MAX_REQUEST_BODY_MB is megabytes, ours is bytes
    if parse is parse_duration:
        return "90s", 90.0, "2m", 120.0
    if parse is parse_listen:
        return ":7001", "0.0.0.0:7001", "127.0.0.1:7002", "127.0.0.1:7002"
    if parse is parse_bool:
        return "false", False, "true", True
    if parse in (parse_int, parse_positive_int):
        return "7", 7, "9", 9
    if parse is parse_path:
        return "/tmp/alias-dir", Path("/tmp/alias-dir"), "/tmp/own-dir", Path("/tmp/own-dir")
    assert parse in (parse_str, parse_optional_str), f.name
    # URL-shaped and long enough for every string setting (URLs, JWT secret).
    alias, own = f"http://alias.example:1/{LONG_SECRET}", f"http://own.example:2/{LONG_SECRET}"
    return alias, alias, own, own


def _aliased() -> list[Any]:
    cases = []
    for cls in (OrchestratorSettings, NodeSettings):
        for f in dataclasses.fields(cls):
            for alias in f.metadata.get("env", ()):
                if not alias.startswith("CYNODE_"):
                    cases.append(pytest.param(cls, f, alias, id=f"{cls.__name__}.{f.name}<-{alias}"))
    return cases


@pytest.mark.parametrize("cls, field, alias", _aliased())
def test_upstream_alias_is_accepted_and_the_cynode_name_wins(cls: type, field: dataclasses.Field, alias: str) -> None:  # type: ignore[type-arg]
    alias_raw, alias_value, own_raw, own_value = _samples(field)
    assert getattr(load_settings(cls, environ={alias: alias_raw}), field.name) == alias_value
    own = f"CYNODE_{field.name.upper()}"
    assert getattr(load_settings(cls, environ={alias: alias_raw, own: own_raw}), field.name) == own_value


def test_the_expected_upstream_names_are_aliases() -> None:
    names = {
        alias
        for cls in (OrchestratorSettings, NodeSettings)
        for f in dataclasses.fields(cls)
        for alias in f.metadata.get("env", ())
    }
    assert {
        "DATABASE_URL",
        "JWT_SECRET",
        "NODE_REGISTRATION_PSK",
        "BOOTSTRAP_ADMIN_PASSWORD",
        "ORCHESTRATOR_URL",
        "NODE_SLUG",
        "JWT_ACCESS_DURATION",
        "MAX_REQUEST_BODY_MB",
    } <= names


# -- bad values ------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ, key",
    [
        ({"CYNODE_ACCESS_TOKEN_TTL": "soon"}, "CYNODE_ACCESS_TOKEN_TTL"),
        ({"JWT_REFRESH_DURATION": "1 week"}, "JWT_REFRESH_DURATION"),
        ({"CYNODE_LOGIN_RATE_PER_MINUTE": "0"}, "CYNODE_LOGIN_RATE_PER_MINUTE"),
        ({"CYNODE_MAX_REQUEST_BYTES": "ten"}, "CYNODE_MAX_REQUEST_BYTES"),
        ({"CYNODE_DISPATCHER_ENABLED": "maybe"}, "CYNODE_DISPATCHER_ENABLED"),
        ({"CYNODE_GATEWAY_LISTEN": "localhost"}, "CYNODE_GATEWAY_LISTEN"),
        ({"CONTROL_PLANE_LISTEN_ADDR": "host:99999"}, "CONTROL_PLANE_LISTEN_ADDR"),
    ],
)
def test_a_bad_environment_value_names_its_variable(environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        orch(environ)


def test_a_bad_yaml_value_names_the_file_and_key(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "lease_seconds: forever\n")
    with pytest.raises(ConfigError) as err:
        orch({"CYNODE_CONFIG": str(path)})
    assert str(path) in str(err.value) and "lease_seconds" in str(err.value) and "forever" in str(err.value)


def test_a_bad_secret_value_is_named_but_not_shown(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "node_psk: [hunter2-psk]\n")
    with pytest.raises(ConfigError) as err:
        orch({"CYNODE_CONFIG": str(path)})
    assert "node_psk" in str(err.value) and "hunter2" not in str(err.value) and "<hidden>" in str(err.value)


@pytest.mark.parametrize("variable", ["CYNODE_JWT_SECRET", "JWT_SECRET"])
def test_a_short_jwt_secret_is_refused_naming_its_length_not_its_value(variable: str) -> None:
    secret = "x1y2z3" * 5  # 30 bytes
    with pytest.raises(ConfigError) as err:
        orch({variable: secret})
    assert "JWT secret" in str(err.value) and "30 bytes" in str(err.value) and secret not in str(err.value)
    assert orch({variable: secret + "ab"}).jwt_secret == secret + "ab"  # 32 bytes is enough


def test_urls_must_be_http() -> None:
    with pytest.raises(ConfigError, match="public_url"):
        orch({"CYNODE_PUBLIC_URL": "ftp://x"})


def test_an_unknown_yaml_key_is_an_error_naming_it(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "acess_token_ttl: 10m\n")
    with pytest.raises(ConfigError, match="'acess_token_ttl'"):
        orch({"CYNODE_CONFIG": str(path)})
    nested = yaml_file(tmp_path, "orchestrator:\n  urll: http://x:1\n")
    with pytest.raises(ConfigError, match=r"'orchestrator\.urll'"):
        load_settings(NodeSettings, environ={"CYNODE_CONFIG": str(nested)})


def test_an_unknown_override_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no_such_setting"):
        orch(overrides={"no_such_setting": 1})


def test_one_yaml_file_may_hold_orchestrator_and_node_keys(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "access_token_ttl: 1m\norchestrator:\n  url: http://10.0.0.5:12082\nnode:\n  id: n-5\n")
    assert orch({"CYNODE_CONFIG": str(path)}).access_token_ttl == 60.0
    node = load_settings(NodeSettings, environ={"CYNODE_CONFIG": str(path)})
    assert (node.orchestrator_url, node.node_slug) == ("http://10.0.0.5:12082", "n-5")


@pytest.mark.parametrize(
    "text, why",
    [
        ("a: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
    ],
)
def test_a_malformed_yaml_file_is_an_error(tmp_path: Path, text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        orch({"CYNODE_CONFIG": str(yaml_file(tmp_path, text))})


def test_a_missing_yaml_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no-such.yaml"):
        orch({"CYNODE_CONFIG": str(tmp_path / "no-such.yaml")})


# -- Go durations ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, seconds",
    [
        ("15m", 900.0),
        ("168h", 604800.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("2h0m5s", 7205.0),
        ("90", 90.0),
        ("0", 0.0),
        (45, 45.0),
        (2.5, 2.5),
    ],
)
def test_go_durations(raw: Any, seconds: float) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["", "1x", "1h 30m", "-5s", "m", "h1", True, "5m-", "1d", "-3"])
def test_bad_go_durations(raw: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(raw)


# -- the node's start-up YAML ----------------------------------------------------


def test_node_yaml_dotted_keys(tmp_path: Path) -> None:
    path = yaml_file(
        tmp_path,
        """
version: 1
orchestrator:
  url: http://orchestrator.example:12082
  registration_psk_file: /etc/cynode/psk
  timeouts:
    request_seconds: 30s
node:
  id: worker-07
  name: Worker Seven
  labels: [gpu, lab]
worker_api:
  listen_host: 0.0.0.0
  listen_port: 12345
  public_base_url: http://worker-07.example:12345
  max_request_bytes: 1048576
sandbox:
  runtime: podman
  default_image: localhost/img:1
  max_concurrency: 3
  mount_root: /srv/cynode/mounts
  timeouts:
    default_seconds: 600
    max_seconds: 1200
inference:
  backend: none
  ollama_url: http://127.0.0.1:11435
  model: tiny
storage:
  state_dir: /srv/cynode/state
logging:
  level: DEBUG
""",
    )
    s = load_settings(NodeSettings, environ={"CYNODE_CONFIG": str(path)})
    assert s.orchestrator_url == "http://orchestrator.example:12082"
    assert s.node_psk_file == Path("/etc/cynode/psk") and s.http_timeout == 30.0
    assert (s.node_slug, s.node_name, s.node_labels) == ("worker-07", "Worker Seven", ["gpu", "lab"])
    assert (s.worker_listen_host, s.worker_listen_port) == ("0.0.0.0", 12345)
    assert s.advertised_url == "http://worker-07.example:12345" and s.max_request_bytes == 1048576
    assert (s.sandbox_runtime, s.sandbox_image, s.job_slots) == ("podman", "localhost/img:1", 3)
    assert s.workspace_root == Path("/srv/cynode/mounts")
    assert (s.default_timeout_seconds, s.max_timeout_seconds) == (600, 1200)
    assert (s.inference_backend, s.ollama_url, s.inference_model) == ("none", "http://127.0.0.1:11435", "tiny")
    assert s.state_dir == Path("/srv/cynode/state") and s.log_level == "DEBUG"

    env = load_settings(
        NodeSettings,
        environ={"CYNODE_CONFIG": str(path), "ORCHESTRATOR_URL": "http://alias:1", "CYNODE_NODE_SLUG": "from-env"},
    )
    assert (env.orchestrator_url, env.node_slug, env.node_name) == ("http://alias:1", "from-env", "Worker Seven")


def test_the_node_yaml_file_version_must_be_1(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'version' 2"):
        load_settings(NodeSettings, environ={"CYNODE_CONFIG": str(yaml_file(tmp_path, "version: 2\nnode:\n  id: a\n"))})


def test_node_field_names_work_in_yaml_too(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "orchestrator_url: http://plain:1\nnode_slug: plain\n")
    s = load_settings(NodeSettings, environ={"CYNODE_CONFIG": str(path)})
    assert (s.orchestrator_url, s.node_slug) == ("http://plain:1", "plain")


def test_node_validation_names_the_setting(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "sandbox:\n  timeouts:\n    default_seconds: 900\n    max_seconds: 60\n")
    with pytest.raises(ConfigError, match="default_timeout_seconds"):
        load_settings(NodeSettings, environ={"CYNODE_CONFIG": str(path)})
    with pytest.raises(ConfigError, match="worker_api.listen_port"):
        path = yaml_file(tmp_path, "worker_api:\n  listen_port: http\n")
        load_settings(NodeSettings, environ={"CYNODE_CONFIG": str(path)})


def test_a_node_yaml_shaped_like_the_contract_loads(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every key of the node start-up YAML (node contract 1.2) is accepted; later-phase sections are ignored."""
    from node_agent.settings import NodeSettings

    path = tmp_path / "node.yaml"
    path.write_text(
        "version: 1\n"
        "orchestrator:\n  url: http://127.0.0.1:12082\n  registration_psk_env: TEST_NODE_PSK\n"
        "  timeouts: {connect_seconds: 5, request_seconds: 20}\n"
        "node: {id: worker-7, name: Seven, labels: [gpu]}\n"
        "worker_api: {listen_host: 0.0.0.0, listen_port: 12091, public_base_url: 'http://w7:12091'}\n"
        "sandbox: {mode: sandbox_only, runtime: podman, rootless: true, default_network_policy: restricted,"
        " max_concurrency: 3, timeouts: {default_seconds: 60, max_seconds: 600}}\n"
        "inference: {mode: require, backend: none}\n"
        "storage: {state_dir: /tmp/n7}\nlogging: {level: DEBUG}\nupdates: {enable_dynamic_config: false}\n"
    )
    monkeypatch.setenv("TEST_NODE_PSK", "psk-from-env")
    s = load_settings(NodeSettings, environ={}, config_file=path)
    assert (s.node_slug, s.node_name, s.node_labels) == ("worker-7", "Seven", ["gpu"])
    assert (s.worker_listen_port, s.job_slots, s.sandbox_mode, s.inference_mode) == (
        12091,
        3,
        "sandbox_only",
        "require",
    )
    assert (s.connect_timeout, s.http_timeout, s.default_timeout_seconds) == (5.0, 20.0, 60)
    assert s.require_psk() == "psk-from-env" and s.advertised_url == "http://w7:12091"
    path.write_text("sandbox: {mode: sometimes}\n")
    with pytest.raises(ConfigError, match="sandbox.mode"):
        load_settings(NodeSettings, environ={}, config_file=path)
