"""cynode-llamacpp: the ``llamacpp`` inference backend, registered through the ``cynode`` entry points.

The backend loads a local GGUF model with llama-cpp-python and serves the
part of Ollama's HTTP API a node uses on a loopback port. Importing the
package is cheap: llama-cpp-python is only imported when a backend starts.
"""

__version__ = "0.1.0"
