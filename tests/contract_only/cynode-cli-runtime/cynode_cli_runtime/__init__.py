"""cynode-cli-runtime: a sandbox runtime plugin for cynode, written as a third party would.

It runs each job with the ``podman`` command line (no podman-py) and
registers itself as ``podman-cli`` through the ``cynode`` entry-point group.
It depends on the plugin contract alone (``pip install cynode``, no
extras), and its tests are cynode's sandbox runtime contract kit.
"""

__version__ = "0.1.0"
