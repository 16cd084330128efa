"""Decoding: greedy CTC (``greedy``), whole-file recognition of raw audio (``offline``), the streaming
recognizer (``streaming``) and emission-latency measurement (``latency``)."""
