"""asr-kd: distil large Conformer CTC teachers into small streaming students.

Shape legend used in every docstring of the package:

    B  batch size              T  frames (feature frames, or encoder frames after subsampling)
    F  feature dimension       V  vocabulary size (CTC blank at index 0)
    U  target tokens           N  audio samples
    K  top-k kept in the posterior cache

Features are ``(B, T, F)``, posteriors ``(B, T, V)``; lengths are ``(B,)`` int64 tensors.
"""

__version__ = "0.1.0"
