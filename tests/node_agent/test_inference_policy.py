"""node_agent.inference_policy: what a job may ask of the node's model (docs/wire_contract.md#inference-proxy).

Pure functions, no server: the proxy-level test (a real proxy in front of a
stand-in upstream) is in test_inference_proxy.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cynode_core.contract.errors import InvalidInput, NotPermitted
from cynode_core.settings import ConfigError, load_settings
from node_agent.inference_policy import (
    DEFAULT_MAX_CTX,
    DEFAULT_MAX_PREDICT,
    MODEL_ENDPOINTS,
    InferencePolicy,
    node_models,
    pin_request,
)
from node_agent.inference_proxy import ALLOWED_ENDPOINTS
from node_agent.settings import NodeSettings

POLICY = InferencePolicy(models=("gemma3:270m", "nomic-embed-text:latest"), max_ctx=4096, max_predict=512)


def pin(body: Any, path: str = "/api/generate", policy: InferencePolicy = POLICY) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    pinned = json.loads(pin_request(path, raw, policy))
    assert isinstance(pinned, dict)
    return pinned


def refused(body: Any, path: str = "/api/generate", policy: InferencePolicy = POLICY) -> InvalidInput | NotPermitted:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises((InvalidInput, NotPermitted)) as caught:
        pin_request(path, raw, policy)
    assert isinstance(caught.value, InvalidInput | NotPermitted)
    return caught.value


# --------------------------------------------------------------------- which calls


def test_every_post_endpoint_the_proxy_forwards_is_pinned() -> None:
    assert {path for path, method in ALLOWED_ENDPOINTS.items() if method == "POST"} == MODEL_ENDPOINTS


@pytest.mark.parametrize("path", ["/api/tags", "/api/version", "/healthz", "/api/pull"])
def test_other_paths_pass_through_byte_for_byte(path: str) -> None:
    body = b'{"model": "anything", "keep_alive": 0}'
    assert pin_request(path, body, POLICY) is body


# -------------------------------------------------------------------------- models


@pytest.mark.parametrize(
    ("asked", "forwarded"),
    [
        ("gemma3:270m", "gemma3:270m"),
        ("Gemma3:270M", "gemma3:270m"),
        ("registry.ollama.ai/library/gemma3:270m", "gemma3:270m"),
        ("nomic-embed-text", "nomic-embed-text:latest"),
        ("", "gemma3:270m"),
        ("   ", "gemma3:270m"),
        (None, "gemma3:270m"),
    ],
)
def test_the_model_is_one_of_the_nodes_under_the_nodes_spelling(asked: str | None, forwarded: str) -> None:
    assert pin({"model": asked, "prompt": "hi"})["model"] == forwarded


def test_no_model_field_means_the_nodes_first_model() -> None:
    assert pin({"prompt": "hi"}) == {"prompt": "hi", "model": "gemma3:270m"}


@pytest.mark.parametrize("path", sorted(MODEL_ENDPOINTS))
@pytest.mark.parametrize("asked", ["llama3:70b", "gemma3", "gemma3:270m-instruct", "\ud800", "x\x00"])
def test_a_model_the_node_does_not_serve_is_not_permitted(path: str, asked: str) -> None:
    error = refused({"model": asked}, path)
    assert isinstance(error, NotPermitted)
    assert "gemma3:270m" in error.detail  # says what the node serves
    error.detail.encode("utf-8")  # printable in a log line and a reply, whatever was asked


def test_show_reads_the_older_name_field_too() -> None:
    assert pin({"name": "NOMIC-EMBED-TEXT"}, "/api/show") == {
        "name": "nomic-embed-text:latest",
        "model": "nomic-embed-text:latest",
    }
    assert isinstance(refused({"model": "gemma3:270m", "name": "other"}, "/api/show"), NotPermitted)


@pytest.mark.parametrize("value", [1, 1.5, True, ["gemma3:270m"], {"name": "gemma3:270m"}])
def test_a_model_that_is_not_a_string_is_invalid(value: object) -> None:
    assert isinstance(refused({"model": value}), InvalidInput)
    assert isinstance(refused({"name": value}, "/api/show"), InvalidInput)


def test_a_node_without_models_refuses_every_model_call() -> None:
    empty = InferencePolicy(models=())
    assert isinstance(refused({"model": ""}, policy=empty), NotPermitted)
    assert isinstance(refused({"model": "gemma3:270m"}, policy=empty), NotPermitted)


@pytest.mark.parametrize("key", ["Model", "MODEL", "NAME", "Keep_Alive", "\u212aeep_alive", "OPTIONS"])
def test_a_field_go_would_read_as_a_pinned_one_is_refused(key: str) -> None:
    """Ollama's Go decoder matches field names regardless of case (the Kelvin sign is a k)."""
    assert isinstance(refused({"model": "gemma3:270m", key: "llama3:70b"}), InvalidInput)


def test_the_last_of_duplicate_keys_is_checked_and_only_it_is_forwarded() -> None:
    raw = b'{"model": "gemma3:270m", "model": "llama3:70b"}'
    assert isinstance(refused(raw), NotPermitted)
    raw = b'{"model": "llama3:70b", "model": "gemma3:270m", "keep_alive": 0, "keep_alive": -1}'
    assert pin_request("/api/chat", raw, POLICY) == b'{"model":"gemma3:270m"}'


# ---------------------------------------------------------------------- keep_alive


@pytest.mark.parametrize("value", [0, "0", "0s", -1, "-1m", "1ms", "5m", 3600, None, {"x": 1}])
def test_keep_alive_is_dropped_whatever_it_says(value: object) -> None:
    assert "keep_alive" not in pin({"model": "gemma3:270m", "keep_alive": value})


# ------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("value", "forwarded"),
    [(1, 1), (2048, 2048), (2048.9, 2048), (4096, 4096), (4097, 4096), (10**100, 4096), (1e300, 4096)],
)
def test_num_ctx_is_lowered_to_the_nodes_bound(value: float, forwarded: int) -> None:
    assert pin({"options": {"num_ctx": value}})["options"] == {"num_ctx": forwarded}


def test_num_predict_is_lowered_to_the_nodes_bound_and_other_options_are_kept() -> None:
    options = {"num_predict": 100000, "temperature": 0.2, "seed": 7, "stop": ["\n"]}
    assert pin({"options": options})["options"] == {**options, "num_predict": 512}


@pytest.mark.parametrize("key", ["num_ctx", "num_predict"])
@pytest.mark.parametrize("value", [0, -1, -2, 0.5, -1e300, "2048", "", True, False, None, [1], {"n": 1}])
def test_a_bound_that_is_not_a_number_of_at_least_1_is_invalid(key: str, value: object) -> None:
    error = refused({"options": {key: value}})
    assert isinstance(error, InvalidInput) and f"options.{key}" in error.detail


@pytest.mark.parametrize(
    "raw", [b'{"options": {"num_ctx": 1e400}}', b'{"options": {"num_predict": 1' + b"0" * 400 + b"}}"]
)
def test_huge_numbers_are_lowered_too(raw: bytes) -> None:
    assert pin(raw)["options"] in ({"num_ctx": 4096}, {"num_predict": 512})


@pytest.mark.parametrize("options", [[], "num_ctx=1", 3, True])
def test_options_that_are_not_an_object_are_invalid(options: object) -> None:
    assert isinstance(refused({"options": options}), InvalidInput)


def test_null_options_are_left_to_the_backend() -> None:
    assert pin({"options": None}) == {"options": None, "model": "gemma3:270m"}


def test_an_absent_bound_is_left_to_the_backend() -> None:
    assert pin({"options": {"temperature": 0}})["options"] == {"temperature": 0}


# ---------------------------------------------------------------------- the body


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"[]",
        b'"model"',
        b"null",
        b"42",
        b"{",
        b'{"model": "gemma3:270m"} trailing',
        b"\xef\xbb\xbf{}",  # a byte order mark
        b'{"prompt": "\xff"}',  # not UTF-8
        b'{"prompt": "\xed\xa0\x80"}',  # a surrogate encoded in UTF-8
        '{"prompt": "hi"}'.encode("utf-16"),
        b'{"temperature": NaN}',
        b'{"options": {"num_ctx": Infinity}}',
        b'{"seed": -Infinity}',
        b'{"seed": 1' + b"0" * 5000 + b"}",  # past Python's 4300-digit limit
        b'{"seed": 1e400}',  # no double holds it
        b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"options": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}",
    ],
)
def test_a_body_that_is_not_a_json_object_the_backend_can_read_is_invalid(raw: bytes) -> None:
    assert isinstance(refused(raw), InvalidInput)


def test_lone_surrogates_and_nul_survive_as_json_escapes() -> None:
    raw = b'{"prompt": "a\\ud800b\\u0000c", "model": "gemma3:270m"}'
    forwarded = pin_request("/api/generate", raw, POLICY)
    assert forwarded == b'{"prompt":"a\\ud800b\\u0000c","model":"gemma3:270m"}'
    assert json.loads(forwarded)["prompt"] == "a\ud800b\x00c"


def test_text_stays_utf8_rather_than_growing_into_escapes() -> None:
    forwarded = pin_request("/api/generate", json.dumps({"prompt": "Grüße, 世界"}).encode(), POLICY)
    assert "Grüße, 世界".encode() in forwarded


def test_a_body_at_the_proxys_size_limit_is_pinned_in_linear_time() -> None:
    prompt = "word " * (2 * 1024 * 1024 - 10)  # about 10 MiB
    raw = json.dumps({"model": "gemma3:270m", "prompt": prompt, "options": {"num_ctx": 10**9}}).encode()
    start = time.monotonic()
    pinned = json.loads(pin_request("/api/generate", raw, POLICY))
    assert time.monotonic() - start < 5
    assert pinned["options"] == {"num_ctx": 4096} and len(pinned["prompt"]) == len(prompt)


# ------------------------------------------------------------- properties, fuzzed

ODD_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates and NUL included
PINNED_KEYS = ["model", "name", "keep_alive", "options", "num_ctx", "num_predict", "Model", "\u212aeep_alive"]
KEYS = st.one_of(st.sampled_from(PINNED_KEYS), ODD_TEXT)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -1, 4096, 4097, 10**200]),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), NUMBERS, ODD_TEXT, st.sampled_from(["gemma3:270m", "GEMMA3:270m", "llama3"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=20,
)
MODELS = st.one_of(st.sampled_from(["gemma3:270m", "Nomic-Embed-Text", "", None, "llama3"]), SCALARS)
BOUNDS = st.dictionaries(
    st.sampled_from(["num_ctx", "num_predict", "temperature", "NUM_CTX"]), st.one_of(NUMBERS, SCALARS), min_size=1
)
OPTIONS = st.one_of(BOUNDS, JSON_VALUES)
REQUESTS = st.fixed_dictionaries(
    {},
    optional={
        "model": MODELS,
        "name": MODELS,
        "keep_alive": JSON_VALUES,
        "options": OPTIONS,
        "prompt": ODD_TEXT,
        "stream": st.booleans(),
    },
).flatmap(lambda base: st.dictionaries(KEYS, JSON_VALUES, max_size=3).map(lambda extra: {**extra, **base}))


def check_pinned(forwarded: bytes, policy: InferencePolicy) -> dict[str, Any]:
    """What every forwarded body satisfies: the rules hold on what the backend will read."""
    request = json.loads(forwarded.decode("utf-8"))
    assert isinstance(request, dict)
    assert request["model"] in policy.models
    name = request.get("name")
    if isinstance(name, str) and name.strip():
        assert name in policy.models
    for key in request:
        assert key.casefold() not in {"model", "name", "keep_alive", "options"} or key == key.casefold()
    assert "keep_alive" not in request
    options = request.get("options")
    if options is not None:
        for key, limit in (("num_ctx", policy.max_ctx), ("num_predict", policy.max_predict)):
            if key in options:
                value = options[key]
                assert type(value) is int and 1 <= value <= limit
    assert pin_request("/api/generate", forwarded, policy) == forwarded  # pinning a pinned body changes nothing
    return request


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=200), path=st.sampled_from(sorted(MODEL_ENDPOINTS)))
def test_any_bytes_are_pinned_or_refused_cleanly(body: bytes, path: str) -> None:
    try:
        forwarded = pin_request(path, body, POLICY)
    except (InvalidInput, NotPermitted):
        return
    check_pinned(forwarded, POLICY)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=REQUESTS, path=st.sampled_from(sorted(MODEL_ENDPOINTS)), ascii_only=st.booleans())
def test_any_json_request_is_pinned_or_refused_cleanly(request: dict[str, Any], path: str, ascii_only: bool) -> None:
    raw = json.dumps(request, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        forwarded = pin_request(path, raw, POLICY)
    except (InvalidInput, NotPermitted) as exc:
        assert exc.detail
        exc.detail.encode("utf-8")
        return
    pinned = check_pinned(forwarded, POLICY)
    # Fields the policy does not own go through as they came.
    untouched = {k: v for k, v in request.items() if k not in {"model", "name", "keep_alive", "options"}}
    assert {k: v for k, v in pinned.items() if k in untouched} == untouched


@settings(max_examples=300, deadline=None)
@given(options=BOUNDS)
def test_any_bound_is_lowered_to_the_limit_or_refused(options: dict[str, Any]) -> None:
    try:
        forwarded = pin_request("/api/generate", json.dumps({"options": options}).encode(), POLICY)
    except InvalidInput as exc:
        assert "options." in exc.detail
        return
    pinned = check_pinned(forwarded, POLICY)
    for key, limit in (("num_ctx", POLICY.max_ctx), ("num_predict", POLICY.max_predict)):
        if key in options:
            assert pinned["options"][key] == min(int(min(options[key], limit)), limit)
    assert {k: v for k, v in pinned["options"].items() if k not in {"num_ctx", "num_predict"}} == {
        k: v for k, v in options.items() if k not in {"num_ctx", "num_predict"}
    }


@settings(max_examples=200, deadline=None)
@given(
    models=st.lists(st.sampled_from(["a", "A:latest", "b:1", "library/b:1", "c"]), max_size=4),
    asked=st.one_of(st.none(), st.text(max_size=10), st.sampled_from(["a", "B:1", "c:latest", "d"])),
)
def test_a_forwarded_model_is_always_one_of_the_policys(models: list[str], asked: str | None) -> None:
    policy = InferencePolicy(node_models(models, []))
    try:
        forwarded = pin({"model": asked}, policy=policy)["model"]
    except NotPermitted:
        return
    assert forwarded in policy.models


# ------------------------------------------------------------------- node models


def test_the_configured_models_win_over_what_the_backend_lists() -> None:
    assert node_models(["gemma3:270m", None], ["gemma3:270m", "llama3:latest"]) == ("gemma3:270m",)
    assert node_models([None, "  "], ["gemma3:270m", "llama3:latest"]) == ("gemma3:270m", "llama3:latest")
    assert node_models(["Gemma3", "gemma3:latest"], []) == ("Gemma3",)
    assert node_models([], []) == ()


def test_the_bounds_are_node_settings_with_defaults() -> None:
    defaults = load_settings(NodeSettings, environ={})
    assert (defaults.inference_max_ctx, defaults.inference_max_predict) == (DEFAULT_MAX_CTX, DEFAULT_MAX_PREDICT)
    assert (DEFAULT_MAX_CTX, DEFAULT_MAX_PREDICT) == (8192, 4096)
    environ = {"CYNODE_INFERENCE_MAX_CTX": "2048", "CYNODE_INFERENCE_MAX_PREDICT": "128"}
    chosen = load_settings(NodeSettings, environ=environ)
    assert (chosen.inference_max_ctx, chosen.inference_max_predict) == (2048, 128)
    with pytest.raises(ConfigError):
        load_settings(NodeSettings, environ={"CYNODE_INFERENCE_MAX_CTX": "0"})
