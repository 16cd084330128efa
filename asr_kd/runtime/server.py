"""Live transcription over WebSocket (``asr-kd-onnx serve EXPORT_DIR [--port N]``), and the web page
that uses it, on the same port. sherpa-onnx recognises (asr_kd.runtime.sherpa; asr_kd's graph runner
for an Emformer export); this module is only what sherpa-onnx does not give: the page, the protocol
it speaks, and the limits a server on a user's machine needs.

Protocol (one utterance per connection, any path but ``/``):
    client -> server  binary: 16-bit little-endian mono PCM at the model's rate (meta.json
                      ``sample_rate``), at most ``MAX_MESSAGE_BYTES`` per message;
                      text ``"done"``: end of the utterance.
    server -> client  ``{"type": "partial", "text": ..., "seconds": audio received}`` when the text
                      changes, ``{"type": "final", "text": ...}`` after ``"done"`` (then the server
                      closes), or ``{"type": "error", "message": ...}`` before closing a stream that
                      sent a malformed or oversized message or nothing for ``idle_s``. Other streams
                      are unaffected.

``GET /`` returns the page: it captures the microphone, sends PCM at the model's rate and shows
partials live (``/?autostart=1&seconds=S``: starts without a click and stops after S seconds).

Limits: at most ``max_connections`` streams at once (more get HTTP 503); a browser's WebSocket is
accepted only from the page's own origin (its ``Origin`` names this server's ``Host``) or one given
with ``--origin``, so no other web page can use a server on localhost (clients that send no Origin,
i.e. programs, are accepted); a connection idle for ``idle_s`` is closed. Each connection decodes
its messages one at a time and reads the next only after (at most ``QUEUE_MESSAGES`` messages wait
in websockets' buffer: bounded memory per stream whatever the client sends, TCP back-pressure
beyond); graph runs go to worker threads, so a slow stream does not block the others. A bad client
costs one INFO line, never a traceback. SIGINT or SIGTERM closes every connection and exits 0.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from asr_kd.runtime.loader import load_model

__all__ = ["TranscriptionServer", "serve_forever", "MAX_MESSAGE_BYTES", "QUEUE_MESSAGES"]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64_000  # 2 s of 16 kHz 16-bit audio
QUEUE_MESSAGES = 4
PAGE = Path(__file__).with_name("index.html")


class ProtocolError(ValueError):
    """A client message the protocol does not allow; closes that stream only."""


class TranscriptionServer:
    """One loaded model shared by every connection (see module docstring)."""

    def __init__(self, export_dir: str | Path, int8: bool = False, origins: Sequence[str] = (),
                 max_connections: int = 64, idle_s: float = 30.0):
        self.model = load_model(export_dir, int8=int8)
        self.origins = {o.rstrip("/") for o in origins}
        self.max_connections, self.idle_s = max_connections, idle_s
        self.connections = 0

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Serve the page on ``GET /``; refuse a foreign origin or one stream too many; let the rest
        go on to the WebSocket handshake."""
        if urlsplit(request.path).path in ("/", "/index.html"):  # the page reads its query itself
            page = PAGE.read_text(encoding="utf-8")
            body = page.replace("{{SAMPLE_RATE}}", str(self.model.sample_rate)).encode()
            return _response(http.HTTPStatus.OK, body, "text/html; charset=utf-8")
        origin = request.headers.get("Origin")
        if origin is not None and not self._allowed(origin, request.headers.get("Host", "")):
            log.info("refused a WebSocket from origin %s", origin[:100])
            return _response(http.HTTPStatus.FORBIDDEN, b"origin not allowed\n")
        if self.connections >= self.max_connections:
            log.info("refused a stream: %d open (the limit)", self.connections)
            return _response(http.HTTPStatus.SERVICE_UNAVAILABLE, b"too many streams\n")
        return None

    def _allowed(self, origin: str, host: str) -> bool:
        """Same origin as the page (the Origin's host:port is this server's Host) or a configured one."""
        return origin.rstrip("/") in self.origins or urlsplit(origin).netloc == host

    async def handle(self, websocket: ServerConnection) -> None:
        """One utterance: decode each message before reading the next (see module docstring)."""
        self.connections += 1
        stream, shown, samples = self.model.stream(), "", 0
        try:
            while True:
                try:
                    message = await asyncio.wait_for(websocket.recv(), self.idle_s)
                except TimeoutError:
                    raise ProtocolError(f"idle for {self.idle_s:g} s") from None
                if message == "done":
                    text = await asyncio.to_thread(stream.finalize)
                    await websocket.send(json.dumps({"type": "final", "text": text}))
                    await websocket.close()
                    return
                pcm = self._pcm(message)
                samples += len(pcm)
                text = await asyncio.to_thread(stream.accept_waveform, pcm)
                if text != shown:
                    shown = text
                    await websocket.send(json.dumps({"type": "partial", "text": text,
                                                     "seconds": samples / self.model.sample_rate}))
        except ProtocolError as e:
            log.info("closing a stream from %s: %s", _peer(websocket), e)
            try:
                await websocket.send(json.dumps({"type": "error", "message": str(e)}))
                await websocket.close(code=1009 if "oversized" in str(e) else 1003, reason=str(e)[:120])
            except ConnectionClosed:
                pass
        except ConnectionClosed:
            log.debug("a client from %s went away", _peer(websocket))
        finally:
            self.connections -= 1

    @staticmethod
    def _pcm(message: str | bytes) -> np.ndarray:
        """float32 samples of a binary 16-bit PCM message; anything else is a :class:`ProtocolError`."""
        if isinstance(message, str):
            raise ProtocolError(f"unexpected text message {message[:40]!r}: send binary PCM or 'done'")
        if len(message) > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"oversized message: {len(message)} bytes > {MAX_MESSAGE_BYTES}")
        if len(message) % 2:
            raise ProtocolError(f"malformed message: {len(message)} bytes is not whole 16-bit samples")
        return np.frombuffer(message, dtype="<i2").astype(np.float32) / 32768.0


def _response(status: http.HTTPStatus, body: bytes, kind: str = "text/plain") -> Response:
    headers = Headers([("Content-Type", kind), ("Content-Length", str(len(body)))])
    return Response(status, status.phrase, headers, body)


def _peer(websocket: ServerConnection) -> str:
    address = websocket.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"


async def _serve(server: TranscriptionServer, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    quiet = logging.getLogger("websockets.server")  # failed handshakes: one line, no traceback
    quiet.setLevel(logging.WARNING)
    # max_size above our own limit, so an oversized message gets our error message, not a bare 1009
    async with serve(server.handle, host, port, process_request=server.process_request,
                     max_size=4 * MAX_MESSAGE_BYTES, max_queue=QUEUE_MESSAGES, logger=quiet) as ws:
        bound = ws.sockets[0].getsockname()
        print(f"serving http://{bound[0]}:{bound[1]}/ (WebSocket on the same port)", flush=True)
        await stop.wait()
        log.info("stopping: closing %d stream(s)", server.connections)


def serve_forever(export_dir: str | Path, host: str = "127.0.0.1", port: int = 8765, int8: bool = False,
                  origins: Sequence[str] = (), max_connections: int = 64, idle_s: float = 30.0) -> None:
    """Load the export and serve until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = TranscriptionServer(export_dir, int8, origins, max_connections, idle_s)
    asyncio.run(_serve(server, host, port))
