"""``asr-kd-onnx``: transcribe a file, or serve live transcription, with an exported student.

    asr-kd-onnx EXPORT_DIR AUDIO_FILE [--int8] [--piece-ms 100] [--threads 1]
    asr-kd-onnx serve EXPORT_DIR [--port 8765] [--host 127.0.0.1] [--int8] [--origin URL ...]
                [--max-connections 64] [--idle-s 30]

The first streams any file soundfile reads (WAV, FLAC, ...; any rate: resampled; channels averaged)
from disk in bounded memory, printing what each partial result adds (with the audio time it came
at), then the final text on its own line; the second serves a WebSocket endpoint and its web page
(asr_kd.runtime.server). Needs no PyTorch: ``python -m asr_kd.runtime`` is the same command.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from asr_kd.errors import DataError, MissingFileError, UserError

__all__ = ["main", "read_blocks", "transcribe_file"]


def read_blocks(path: str | Path, seconds: float = 0.1) -> Iterator[tuple[np.ndarray, int]]:
    """Mono float32 pieces of ``seconds`` of an audio file, read from disk one at a time, with its
    rate; a missing, empty, unreadable or non-finite file is a :class:`DataError`."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such audio file")
    try:
        with sf.SoundFile(str(path)) as f:
            if f.frames == 0:
                raise DataError(f"{path}: no audio in the file")
            rate = f.samplerate
            for block in f.blocks(blocksize=max(1, int(rate * seconds)), dtype="float32", always_2d=True):
                mono = block.mean(axis=1)
                if not np.isfinite(mono).all():
                    raise DataError(f"{path}: the audio holds NaN or infinite samples")
                yield mono, rate
    except sf.LibsndfileError as e:
        raise DataError(f"{path}: not a readable audio file ({e})") from None


def transcribe_file(export_dir: str, audio: str, int8: bool = False, piece_ms: int = 100, threads: int = 1,
                    out=None) -> str:
    """Stream ``audio`` through the export in ``piece_ms`` pieces, printing what each partial adds;
    returns the final text."""
    from asr_kd.runtime.loader import load_model

    out = out or sys.stdout
    stream, shown, seconds = load_model(export_dir, int8=int8, threads=threads).stream(), "", 0.0
    for piece, rate in read_blocks(audio, piece_ms / 1000):
        partial = stream.accept_waveform(piece, rate)
        seconds += len(piece) / rate
        if partial != shown:
            added = partial[len(shown):] if partial.startswith(shown) else f"\n{partial}"
            print(f"[{seconds:6.2f} s] +{added!r}", file=out, flush=True)
            shown = partial
    return stream.finalize()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else argv
    start = time.perf_counter()
    try:
        if argv[:1] == ["serve"]:
            parser = argparse.ArgumentParser(prog="asr-kd-onnx serve",
                                             description="live transcription server")
            parser.add_argument("export_dir")
            parser.add_argument("--host", default="127.0.0.1")
            parser.add_argument("--port", type=int, default=8765)
            parser.add_argument("--int8", action="store_true", help="use model.int8.onnx")
            parser.add_argument("--origin", action="append", default=[],
                                help="a web origin allowed besides the page's own, e.g. https://app.example")
            parser.add_argument("--max-connections", type=int, default=64, help="streams at once")
            parser.add_argument("--idle-s", type=float, default=30.0, help="close a stream idle this long")
            args = parser.parse_args(argv[1:])
            from asr_kd.runtime.server import serve_forever

            serve_forever(args.export_dir, args.host, args.port, args.int8, args.origin, args.max_connections,
                          args.idle_s)
            return 0
        parser = argparse.ArgumentParser(prog="asr-kd-onnx", description=__doc__.split("\n")[0],
                                         epilog="or: asr-kd-onnx serve EXPORT_DIR [--port N]")
        parser.add_argument("export_dir")
        parser.add_argument("audio")
        parser.add_argument("--int8", action="store_true", help="use model.int8.onnx")
        parser.add_argument("--piece-ms", type=int, default=100, help="audio piece size fed to the stream")
        parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
        args = parser.parse_args(argv)
        text = transcribe_file(args.export_dir, args.audio, args.int8, args.piece_ms, args.threads)
    except (UserError, OSError) as e:
        print(f"asr-kd-onnx: {e}", file=sys.stderr)
        return 2
    print(text, flush=True)
    print(f"({time.perf_counter() - start:.2f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
