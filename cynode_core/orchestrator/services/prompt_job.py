"""The sandbox job a prompt task becomes: a small Python client of the inference proxy.

It reads ``INFERENCE_PROXY_URL`` (``http+unix://<escaped socket path>``),
posts ``/api/generate`` with the configured model and prints the answer in the
form of docs/wire_contract.md#prompt-script.
"""

from __future__ import annotations

from cynode_core.contract.job import SandboxRequest

PROMPT_SCRIPT = r"""
import json, os, socket, sys, urllib.parse
url = os.environ.get("INFERENCE_PROXY_URL", "")
if not url.startswith("http+unix://"):
    print("[Ollama request failed] INFERENCE_PROXY_URL is not set to an http+unix:// URL", file=sys.stderr)
    sys.exit(1)
path = urllib.parse.unquote(url[len("http+unix://"):].split("/", 1)[0])
body = json.dumps({"model": os.environ.get("CYNODE_MODEL", ""), "prompt": os.environ.get("CYNODE_PROMPT", ""),
                   "stream": False}).encode()
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(120)
    s.connect(path)
    s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: inference\r\nContent-Type: application/json\r\n"
              b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    raw = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        raw += chunk
    head, _, payload = raw.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        out, rest = b"", payload
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0] or b"0", 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        payload = out
    text = []
    for line in payload.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        if obj.get("error"):
            print("[Ollama error] " + str(obj["error"]))
            sys.exit(0)
        text.append(obj.get("response", ""))
    answer = "".join(text)
    print(answer if answer else "(no response)")
except Exception as exc:
    print("[Ollama request failed] " + str(exc), file=sys.stderr)
    sys.exit(1)
""".strip()


def prompt_payload(image: str, prompt: str, model: str) -> SandboxRequest:
    """The sandbox request of a prompt task: the script above, asking ``model`` through the proxy."""
    return SandboxRequest(
        image=image,
        command=("python3", "-c", PROMPT_SCRIPT),
        env={"CYNODE_PROMPT": prompt, "CYNODE_MODEL": model},
        use_inference=True,
    )
