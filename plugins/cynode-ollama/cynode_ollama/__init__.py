"""cynode-ollama: the ``ollama`` inference backend, registered through the ``cynode`` entry points.

The backend uses an Ollama server that already runs at the configured URL;
it never starts a server or container and never pulls a model. Importing the
package is cheap: the ``ollama`` client is only imported when a backend is built.
"""

__version__ = "0.1.0"
