"""A torch-free runtime for exported students (asr_kd.export) on top of sherpa-onnx: it recognises
(asr_kd.runtime.sherpa); this package adds what sherpa-onnx does not give: checksums checked before
loading (folder), the ``asr-kd-onnx`` command (cli), a WebSocket server with its web page and limits
(server), the measurement process of the export stage (measure), and, for the Emformer only (no
sherpa-onnx contract fits it), asr_kd's own graph runner (onnx_transcriber, fbank). Nothing here
imports torch or any asr_kd module outside asr_kd.runtime but asr_kd.errors.

``asr-kd-onnx EXPORT_DIR AUDIO_FILE`` streams a file; ``asr-kd-onnx serve EXPORT_DIR`` serves
live transcription over WebSocket (asr_kd.runtime.server).
"""
