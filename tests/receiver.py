"""A local HTTP server as an Apprise ``json://`` target: it keeps every message it is sent, and
answers as told (200, or 500 for a target that refuses)."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from tests.jsonserver import JSONHandler


class Receiver:
    """``with Receiver() as r:`` — ``r.url`` for fleet.yaml, ``r.messages`` what arrived;
    ``r.status = 500`` makes it refuse (what it refused is not kept)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(JSONHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                doc = json.loads(self.rfile.read(length) or b"{}")
                if receiver.status == 200:
                    receiver.messages.append(doc)
                self.reply(receiver.status, {"ok": receiver.status == 200})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_port}/hook"

    def bodies(self) -> list[list[str]]:
        """Each message's lines, without the closing "(seen by …)" line."""
        return [m["message"].splitlines()[:-1] for m in self.messages]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
