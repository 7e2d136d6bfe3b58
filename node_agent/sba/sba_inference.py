"""The runner's model calls: Ollama's ``POST /api/chat`` over the job's inference proxy socket.

``INFERENCE_PROXY_URL`` is ``http+unix://<percent-encoded socket path>``
(docs/wire_contract.md#inference-proxy). The runner speaks HTTP/1.1 itself
(``Connection: close``, an answer framed by ``Content-Length``, by chunks or
by the end of the connection), as the prompt task's script does: the
standard library's ``http.client`` has no Unix socket transport. Every
decide call is ``stream: false`` with ``format`` and the sampling options of
agents_contract.md 3.3.
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from typing import Any

URL_PREFIX = "http+unix://"
MAX_ANSWER_BYTES = 8 * 1024 * 1024
NUM_PREDICT = 512


class InferenceError(Exception):
    """No usable answer: the socket is missing, the call failed or timed out, or the answer is not Ollama's."""


def socket_path(url: str) -> str:
    """The socket path of an ``http+unix://`` URL (any HTTP path after it is ignored)."""
    if not url.startswith(URL_PREFIX):
        raise InferenceError("INFERENCE_PROXY_URL is not set to an http+unix:// URL")
    return urllib.parse.unquote(url[len(URL_PREFIX) :].split("/", 1)[0])


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, sep, body = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise InferenceError("malformed chunked answer") from None
        if not sep or size < 0 or len(body) < size:
            raise InferenceError("chunked answer ends early")
        if size == 0:
            return bytes(out)
        out += body[:size]
        body = body[size + 2 :]


def post(path: str, http_path: str, body: dict[str, Any], timeout: float) -> tuple[int, bytes]:
    """POST ``body`` as JSON to ``http_path`` over the socket at ``path``: the status and the answer's body."""
    data = json.dumps(body).encode("utf-8")
    head = (
        f"POST {http_path} HTTP/1.1\r\nHost: inference\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nConnection: close\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    raw = bytearray()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(max(timeout, 0.001))
            sock.connect(path)
            sock.sendall(head.encode("ascii") + data)
            while len(raw) <= MAX_ANSWER_BYTES:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                raw += chunk
    except socket.timeout:  # noqa: UP041 - on Python 3.9 it is not yet TimeoutError
        raise InferenceError("inference call timed out") from None
    except OSError as exc:
        raise InferenceError(f"inference proxy unreachable: {exc.strerror or exc}") from None
    header, sep, payload = bytes(raw).partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise InferenceError("the inference proxy's answer is not HTTP")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        payload = _dechunk(payload)
    elif headers.get("content-length", "").isdigit():
        length = int(headers["content-length"])
        if len(payload) < length:
            raise InferenceError("answer shorter than its Content-Length")
        payload = payload[:length]
    return int(parts[1]), payload


def chat(
    url: str, model: str, messages: list[dict[str, str]], schema: dict[str, Any], seed: int, timeout: float
) -> str:
    """One decide call: the text of the model's answer (``message.content``)."""
    body = {
        "model": model,
        "messages": messages,
        "stream": False,
        "format": schema,
        "options": {"temperature": 0, "seed": seed, "num_predict": NUM_PREDICT},
    }
    status, payload = post(socket_path(url), "/api/chat", body, timeout)
    text = payload.decode("utf-8", "replace")
    if status != 200:
        try:
            reason = json.loads(text).get("error") or text
        except (ValueError, AttributeError):
            reason = text
        raise InferenceError(f"inference answered {status}: {str(reason).strip()[:300]}")
    content = []
    # One JSON object (stream false); NDJSON lines are read too, in case a backend streams anyway.
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if obj.get("error"):
                raise InferenceError(f"inference error: {str(obj['error'])[:300]}")
            content.append(obj.get("message", {}).get("content") or "")
        except (ValueError, AttributeError, TypeError):
            raise InferenceError("the answer is not Ollama's chat JSON") from None
    return "".join(content)
