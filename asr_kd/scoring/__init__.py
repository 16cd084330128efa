"""Scoring: the one text normalisation, WER/CER with jiwer, reports."""
