"""Distillation: the teacher posterior cache (the contract between teacher and student) and KD losses."""
