"""The orchestrator's request object: every spool a multipart upload opened is closed when the request ends.

werkzeug closes the files of ``request.files`` at the end of a request, but
when parsing a form fails midway (a field past ``max_form_memory_size``, a
broken part) the parts it had already spooled never reach ``request.files``
and stay open until the garbage collector finds them. This class remembers
every spool it hands the parser and closes them all in ``close()``, which
Flask calls when the request context ends.
"""

from __future__ import annotations

from typing import IO

from flask import Request


class ClosingRequest(Request):
    """A Flask request that closes every upload spool it opened, parsed or not."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        spool = super()._get_file_stream(total_content_length, content_type, filename, content_length)
        self.__dict__.setdefault("_cynode_spools", []).append(spool)
        return spool

    def close(self) -> None:
        super().close()
        for spool in self.__dict__.pop("_cynode_spools", ()):
            spool.close()
