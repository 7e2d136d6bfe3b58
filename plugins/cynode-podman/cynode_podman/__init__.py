"""cynode-podman: the ``podman`` sandbox runtime, registered through the ``cynode`` entry points.

Importing the package is cheap: podman-py is only imported when a runtime is built.
"""

__version__ = "0.1.0"
