"""Settings, option parsing and text handling of the llamacpp backend (no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cynode_llamacpp.sampling import OptionError, Sampling, StopMatcher
from cynode_llamacpp.served_model import human_number
from cynode_llamacpp.settings import DEFAULT_NUM_CTX, LlamaCppSettings

from cynode_core.contract import InferenceUnavailable, normalize_model_name


def test_defaults_put_the_model_under_home(tmp_path: Path) -> None:
    settings = LlamaCppSettings.from_options({"home": str(tmp_path), "model": None}, environ={})
    assert settings.models_dir == tmp_path / "models"
    assert settings.model_path is None and settings.port == 0
    assert settings.num_ctx == DEFAULT_NUM_CTX and settings.num_predict == 256
    assert settings.served_model_name() == "gemma3:270m"


def test_home_falls_back_to_cynode_home() -> None:
    settings = LlamaCppSettings.from_options({}, environ={"CYNODE_HOME": "/srv/cynode"})
    assert settings.models_dir == Path("/srv/cynode/models")


def test_options_win_over_environment_which_wins_over_the_instruction(tmp_path: Path) -> None:
    env = {
        "CYNODE_LLAMACPP_MODEL_PATH": "/env/model.gguf",
        "CYNODE_LLAMACPP_NUM_CTX": "1024",
        "CYNODE_LLAMACPP_NUM_PREDICT": "64",
        "CYNODE_LLAMACPP_NUM_THREADS": "2",
        "CYNODE_LLAMACPP_PORT": "18080",
    }
    from_env = LlamaCppSettings.from_options({"home": str(tmp_path), "env": {"OLLAMA_CONTEXT_LENGTH": "8192"}}, env)
    assert (from_env.model_path, from_env.num_ctx, from_env.num_predict, from_env.num_threads, from_env.port) == (
        Path("/env/model.gguf"),
        1024,
        64,
        2,
        18080,
    )
    explicit = LlamaCppSettings.from_options({"home": str(tmp_path), "model_path": "/opt/m.gguf", "num_ctx": 512}, env)
    assert (explicit.model_path, explicit.num_ctx) == (Path("/opt/m.gguf"), 512)
    instructed = LlamaCppSettings.from_options({"env": {"OLLAMA_CONTEXT_LENGTH": "8192"}}, {})
    assert instructed.num_ctx == 8192


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("num_ctx", "lots", "must be an integer"),
        ("num_ctx", "16", "must be >= 256"),
        ("port", "70000", "between 0 and 65535"),
        ("num_threads", "0", "must be >= 1"),
    ],
)
def test_bad_settings_name_the_variable(key: str, value: str, message: str) -> None:
    with pytest.raises(InferenceUnavailable, match=f"CYNODE_LLAMACPP_{key.upper()}.*{message}"):
        LlamaCppSettings.from_options({}, {f"CYNODE_LLAMACPP_{key.upper()}": value})


def test_served_name_of_an_operator_model() -> None:
    base = {"home": "/h", "model_path": "/models/My Model.gguf"}
    assert LlamaCppSettings.from_options(base, {}).served_model_name() == "my-model"
    assert LlamaCppSettings.from_options({**base, "selected_model": "tiny:1b"}, {}).served_model_name() == "tiny:1b"
    named = {**base, "selected_model": "tiny:1b", "model": "mine:2b"}
    assert LlamaCppSettings.from_options(named, {}).served_model_name() == "mine:2b"


def test_model_names_normalise_like_ollama() -> None:
    assert normalize_model_name("Gemma3:270M") == "gemma3:270m"
    assert normalize_model_name("gemma3") == "gemma3:latest"
    assert normalize_model_name("registry.ollama.ai/library/gemma3:270m") == "gemma3:270m"
    assert normalize_model_name("me/model") == "me/model:latest"


def test_sampling_defaults_are_ollamas() -> None:
    sampling = Sampling.from_request(None, default_num_predict=256)
    assert (sampling.temperature, sampling.top_k, sampling.top_p, sampling.repeat_penalty) == (0.8, 40, 0.9, 1.1)
    assert sampling.num_predict == 256 and sampling.seed is None and sampling.stop == ()


def test_sampling_reads_the_options_we_honour() -> None:
    sampling = Sampling.from_request(
        {"num_predict": 5, "temperature": 0, "seed": 7, "stop": ["\n", "user:"], "num_ctx": 999, "mirostat": 1},
        default_num_predict=256,
        extra_stop=["\n", "X"],
    )
    assert (sampling.num_predict, sampling.temperature, sampling.seed) == (5, 0.0, 7)
    assert sampling.stop == ("\n", "user:", "X")
    assert Sampling.from_request({"stop": "END"}, default_num_predict=1).stop == ("END",)
    assert Sampling.from_request({"seed": -1}, default_num_predict=1).seed is None


@pytest.mark.parametrize("options", [[], {"temperature": "hot"}, {"num_predict": 1.5}, {"stop": [1]}, {"top_k": True}])
def test_bad_sampling_options_are_rejected(options: object) -> None:
    with pytest.raises(OptionError):
        Sampling.from_request(options, default_num_predict=1)


def test_stop_matcher_holds_back_a_possible_stop_and_cuts_at_it() -> None:
    matcher = StopMatcher(["\nUser:"])
    assert matcher.feed("Hello") == ("Hello", False)
    assert matcher.feed(" there\n") == (" there", False)  # "\n" might start "\nUser:"
    assert matcher.feed("Us") == ("", False)
    assert matcher.feed("ually") == ("\nUsually", False)
    assert matcher.feed(" fine.\nUser: more") == (" fine.", True)


def test_stop_matcher_without_stops_passes_text_through() -> None:
    matcher = StopMatcher([])
    assert matcher.feed("a\n") == ("a\n", False)
    assert matcher.flush() == ""
    held = StopMatcher(["END"])
    assert held.feed("the EN") == ("the ", False)
    assert held.flush() == "EN"


def test_parameter_size_reads_like_ollamas() -> None:
    assert human_number(268_098_176) == "268.10M"
    assert human_number(7_000_000_000) == "7B"
    assert human_number(8_030_261_248) == "8.0B"
    assert human_number(999) == "999"
