"""Export of streaming students to ONNX (asr_kd.export.onnx); the runtime lives in asr_kd.runtime."""
