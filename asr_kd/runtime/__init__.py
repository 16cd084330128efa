"""A torch-free runtime for exported students (asr_kd.export): onnxruntime, numpy, soundfile and
kaldi-native-fbank only. Nothing here imports torch or any asr_kd module outside asr_kd.runtime.

``asr-kd-onnx EXPORT_DIR AUDIO_FILE`` streams a file; ``asr-kd-onnx serve EXPORT_DIR`` serves
live transcription over WebSocket (asr_kd.runtime.server).
"""
