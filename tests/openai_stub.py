"""A real HTTP server speaking OpenAI's /v1/chat/completions with canned answers, for tests."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = Callable[[str], str]  # last user message -> answer text


def cite(prompt: str, source: str) -> str:
    """The [n] the prompt gives to a document from ``source``."""
    found = re.search(rf"\[(\d+)\] \({re.escape(source)}", prompt)
    return f"[{found.group(1)}]" if found else ""


def _handler(answer: Answer, requests: list[dict]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append({"body": body, "auth": self.headers.get("Authorization")})
            text = answer(body["messages"][-1]["content"])
            if not body.get("stream"):
                self._send(
                    "application/json",
                    json.dumps(
                        {
                            "object": "chat.completion",
                            "choices": [
                                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                            ],
                        }
                    ).encode(),
                )
                return
            events = [{"choices": [{"index": 0, "delta": {"content": word}}]} for word in re.findall(r"\S+\s*", text)]
            payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            self._send("text/event-stream", payload.encode())

        def _send(self, kind: str, data: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def openai_stub(answer: Answer) -> Iterator[tuple[str, list[dict]]]:
    """Serve on a free loopback port; yields (base_url ending in /v1, the requests received)."""
    requests: list[dict] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(answer, requests))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    finally:
        server.shutdown()
        server.server_close()
