"""Decoding: greedy CTC (offline) and the streaming recognizer."""
