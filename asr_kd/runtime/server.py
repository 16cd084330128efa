"""Live transcription over WebSocket (``asr-kd-onnx serve EXPORT_DIR [--port N]``), as sherpa-onnx's
and WeNet's servers do, plus the web page that uses it, on the same port.

Protocol (one utterance per connection, any path but ``/``):
    client -> server  binary: 16-bit little-endian mono PCM at the model's rate (meta.json
                      ``sample_rate``), at most ``MAX_MESSAGE_BYTES`` per message;
                      text ``"done"``: end of the utterance.
    server -> client  ``{"type": "partial", "text": ..., "seconds": audio received}`` when the text
                      changes, ``{"type": "final", "text": ...}`` after ``"done"`` (then the server
                      closes), or ``{"type": "error", "message": ...}`` before closing a stream that
                      sent a malformed or oversized message. Other streams are unaffected.

``GET /`` returns the page: it captures the microphone, sends PCM at the model's rate and shows
partials live (``/?autostart=1&seconds=S``: starts without a click and stops after S seconds).
Each connection has its own stream (fbank, states, greedy history) and a bounded queue
(``QUEUE_MESSAGES``): when it is full the server stops reading that socket (TCP back-pressure);
graph runs go to worker threads, so one slow stream does not block the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from asr_kd.runtime.onnx_transcriber import OnnxModel

__all__ = ["TranscriptionServer", "serve_forever", "MAX_MESSAGE_BYTES", "QUEUE_MESSAGES"]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64_000  # 2 s of 16 kHz 16-bit audio
QUEUE_MESSAGES = 32
PAGE = Path(__file__).with_name("index.html")


class ProtocolError(ValueError):
    """A client message the protocol does not allow; closes that stream only."""


class TranscriptionServer:
    """One loaded model shared by every connection (see module docstring)."""

    def __init__(self, export_dir: str | Path, int8: bool = False):
        self.model = OnnxModel(export_dir, int8=int8)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Serve the page on ``GET /``; every other path goes on to the WebSocket handshake."""
        if urlsplit(request.path).path not in ("/", "/index.html"):  # the page reads its query itself
            return None
        page = PAGE.read_text(encoding="utf-8")
        body = page.replace("{{SAMPLE_RATE}}", str(self.model.sample_rate)).encode()
        headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
        return Response(http.HTTPStatus.OK, "OK", headers, body)

    async def handle(self, websocket: ServerConnection) -> None:
        """Read messages into the bounded queue while a worker decodes them."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_MESSAGES)
        worker = asyncio.create_task(self._decode(websocket, queue))
        try:
            async for message in websocket:
                await queue.put(message)
                if message == "done" or worker.done():
                    break
        finally:
            if not worker.done():
                await queue.put(None)  # the client went away: stop the worker
            await worker

    async def _decode(self, websocket: ServerConnection, queue: asyncio.Queue) -> None:
        stream, shown, samples = self.model.stream(), "", 0
        try:
            while (message := await queue.get()) is not None:
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
            log.info("closing a stream: %s", e)
            await websocket.send(json.dumps({"type": "error", "message": str(e)}))
            await websocket.close(code=1003 if "oversized" not in str(e) else 1009, reason=str(e)[:120])

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


async def _serve(server: TranscriptionServer, host: str, port: int) -> None:
    # max_size above our own limit, so an oversized message gets our error message, not a bare 1009
    async with serve(server.handle, host, port, process_request=server.process_request,
                     max_size=4 * MAX_MESSAGE_BYTES, max_queue=QUEUE_MESSAGES) as ws:
        bound = ws.sockets[0].getsockname()
        print(f"serving http://{bound[0]}:{bound[1]}/ (WebSocket on the same port)", flush=True)
        await ws.serve_forever()


def serve_forever(export_dir: str | Path, host: str = "127.0.0.1", port: int = 8765,
                  int8: bool = False) -> None:
    """Load the export and serve until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = TranscriptionServer(export_dir, int8)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(server, host, port))
