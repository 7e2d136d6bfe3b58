"""cynode core: the orchestrator, its plugin contract and shared value types.

Importing this package is cheap on purpose: plugins import ``hookimpl`` from
here and nothing else heavy is loaded until it is needed.
"""

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "cynode"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["__version__", "PROJECT_NAME", "hookspec", "hookimpl"]
