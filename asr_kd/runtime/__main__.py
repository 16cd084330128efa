"""``python -m asr_kd.runtime``: the ``asr-kd-onnx`` command (asr_kd.runtime.cli)."""

import sys

from asr_kd.runtime.cli import main

sys.exit(main())
