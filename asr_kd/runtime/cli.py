"""``asr-kd-onnx``: transcribe a file, or serve live transcription, with an exported student.

    asr-kd-onnx EXPORT_DIR AUDIO_FILE [--int8] [--piece-ms 100] [--threads 1]
    asr-kd-onnx serve EXPORT_DIR [--port 8765] [--host 127.0.0.1] [--int8]

The first prints each changed partial result (with the audio time it came at) then the final text
on its own line; the second serves a WebSocket endpoint and its web page (asr_kd.runtime.server).
Needs no PyTorch: ``python -m asr_kd.runtime`` is the same command.
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["main", "transcribe_file"]


def transcribe_file(export_dir: str, audio: str, int8: bool = False, piece_ms: int = 100, threads: int = 1,
                    out=None) -> str:
    """Stream ``audio`` through the export in ``piece_ms`` pieces, printing partials; returns the text."""
    from asr_kd.runtime.onnx_transcriber import OnnxModel, load_wav

    out = out or sys.stdout
    model = OnnxModel(export_dir, int8=int8, threads=threads)
    wav = load_wav(audio, model.sample_rate)
    stream, piece, shown = model.stream(), max(1, model.sample_rate * piece_ms // 1000), ""
    for offset in range(0, len(wav), piece):
        partial = stream.accept_waveform(wav[offset : offset + piece])
        if partial != shown:
            seconds = min(offset + piece, len(wav)) / model.sample_rate
            print(f"[{seconds:6.2f} s] {partial}", file=out, flush=True)
            shown = partial
    return stream.finalize()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else argv
    start = time.perf_counter()
    if argv[:1] == ["serve"]:
        parser = argparse.ArgumentParser(prog="asr-kd-onnx serve", description="live transcription server")
        parser.add_argument("export_dir")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--int8", action="store_true", help="use model.int8.onnx")
        args = parser.parse_args(argv[1:])
        from asr_kd.runtime.server import serve_forever

        serve_forever(args.export_dir, args.host, args.port, args.int8)
        return 0
    parser = argparse.ArgumentParser(prog="asr-kd-onnx", description=__doc__.split("\n")[0],
                                     epilog="or: asr-kd-onnx serve EXPORT_DIR [--port N]")
    parser.add_argument("export_dir")
    parser.add_argument("audio")
    parser.add_argument("--int8", action="store_true", help="use model.int8.onnx")
    parser.add_argument("--piece-ms", type=int, default=100, help="audio piece size fed to the stream")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args(argv)
    try:
        text = transcribe_file(args.export_dir, args.audio, args.int8, args.piece_ms, args.threads)
    except (FileNotFoundError, ValueError) as e:
        print(f"asr-kd-onnx: {e}", file=sys.stderr)
        return 2
    print(text, flush=True)
    print(f"({time.perf_counter() - start:.2f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
