"""cynode-fsstore: the ``fs`` blob store (artifact content as files under one directory)."""

__version__ = "0.1.0"
