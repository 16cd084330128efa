"""Is the installed environment able to run the pipeline? One check per native dependency.

``python -m asr_kd.environment [--lock requirements.lock]`` (run by ``make setup``) loads every
native extension the stages use, checks that torch and torchaudio are a matching pair, runs
``pip check`` and, with ``--lock``, compares every installed version with the lock file. Each
problem is one line naming the package and the fix; the exit status is 1 when there is any.

The command line calls :func:`diagnose` when a stage dies on an ``ImportError``/``OSError``, so a
broken install reads as one line ("torchaudio 2.11.1 does not load with torch 2.11.0 ...") instead
of a traceback from inside the prepare stage.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["diagnose", "check_lock", "locked_versions", "CHECKS"]

FIX = "reinstall the locked environment: `rm -rf .venv && make setup` (README, 'Installation')"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _release(version: str) -> str:
    """``2.11.0+cu130`` -> ``2.11.0``: the part two builds of one release share."""
    return version.split("+")[0]


def check_torch_pair() -> None:
    """torchaudio's native library is built against exactly one torch release."""
    torch_v, audio_v = _version("torch"), _version("torchaudio")
    pair = f"torchaudio {audio_v} with torch {torch_v}"
    if _release(torch_v) != _release(audio_v):
        raise RuntimeError(f"{pair}: not a matching pair (torchaudio X.Y.Z needs torch X.Y.Z); {FIX}")
    try:
        import torch
        import torchaudio._extension  # noqa: F401  (loads libtorchaudio)

        torch.ops._torchaudio.is_align_available()
    except (ImportError, OSError, RuntimeError, AttributeError) as e:
        raise RuntimeError(
            f"{pair}: torchaudio's native library does not load ({_first_line(e)}); {FIX}"
        ) from e


@contextlib.contextmanager
def _loads(what: str) -> Iterator[None]:
    """Turn a library that fails to import or load inside the block into one line naming ``what``."""
    try:
        yield
    except (ImportError, OSError, AttributeError) as e:
        raise RuntimeError(f"{what} does not load ({_first_line(e)}); {FIX}") from e


def check_ctc_decoder() -> None:
    """flashlight-text: the beam search with a word LM behind ``decode=beam_lm``."""
    with _loads(f"flashlight-text {_version('flashlight-text')}: the CTC beam-search decoder"):
        from flashlight.lib.text.decoder import LexiconDecoder  # noqa: F401
        from torchaudio.models.decoder import ctc_decoder  # noqa: F401


def check_espeak() -> None:
    """espeak-ng, the synthesiser of the embedded corpus (loaded through espeakng-loader)."""
    import _ctypes
    import ctypes

    with _loads(f"espeakng-loader {_version('espeakng-loader')}: the espeak-ng library"):
        import espeakng_loader

        # Unloaded again at once: the synthesiser reloads the library per utterance to reset its
        # global state (asr_kd.data.synthetic.tts), which a handle held here would defeat.
        _ctypes.dlclose(ctypes.CDLL(espeakng_loader.get_library_path())._handle)
        if not Path(espeakng_loader.get_data_path()).is_dir():
            raise OSError(f"no voice data at {espeakng_loader.get_data_path()}")


def check_soundfile() -> None:
    """soundfile and its libsndfile: every audio read and write."""
    with _loads(f"soundfile {_version('soundfile')}: libsndfile"):
        import soundfile

        soundfile.available_formats()


def check_onnxruntime() -> None:
    """onnxruntime and kaldi-native-fbank: the exported student's runtime."""
    versions = f"onnxruntime {_version('onnxruntime')} / kaldi-native-fbank {_version('kaldi-native-fbank')}"
    with _loads(versions):
        import kaldi_native_fbank  # noqa: F401
        import onnxruntime

        onnxruntime.get_available_providers()


def check_pip() -> None:
    """``pip check``: every installed package's requirements are met."""
    proc = subprocess.run([sys.executable, "-m", "pip", "check", "--disable-pip-version-check"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        problems = "; ".join(line for line in proc.stdout.splitlines() if line.strip())
        raise RuntimeError(f"pip check: {problems}; {FIX}")


#: Every check :func:`diagnose` runs, cheapest first.
CHECKS: dict[str, Callable[[], None]] = {
    "torch/torchaudio": check_torch_pair,
    "soundfile": check_soundfile,
    "espeak-ng": check_espeak,
    "ctc decoder": check_ctc_decoder,
    "onnxruntime": check_onnxruntime,
}


def diagnose(pip: bool = False) -> list[str]:
    """One line per broken dependency (empty when every check passes)."""
    checks = [*CHECKS.values(), *([check_pip] if pip else [])]
    problems = []
    for check in checks:
        try:
            check()
        except RuntimeError as e:
            problems.append(str(e))
    return problems


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def locked_versions(lock: str | Path) -> dict[str, str]:
    """``{package: version}`` of every ``name==version`` line of a pip/uv lock file."""
    pins = {}
    for line in Path(lock).read_text(encoding="utf-8").splitlines():
        if m := _PIN.match(line.strip()):
            pins[_canonical(m.group(1))] = m.group(2)
    return pins


def check_lock(lock: str | Path) -> list[str]:
    """One line per installed package whose version differs from ``lock`` (or is missing)."""
    problems = []
    for name, want in sorted(locked_versions(lock).items()):
        have = _version(name)
        if have == "not installed" or _release(have) != _release(want):
            problems.append(f"{name}: {have}, the lock ({lock}) says {want}; {FIX}")
    return problems


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr_kd.environment", description=__doc__.split("\n")[0])
    parser.add_argument("--lock", help="also compare installed versions with this lock file")
    args = parser.parse_args(argv)
    problems = diagnose(pip=True) + (check_lock(args.lock) if args.lock else [])
    for line in problems:
        print(f"asr-kd environment: {line}", file=sys.stderr)
    if not problems:
        print(f"asr-kd environment: OK (torch {_version('torch')}, torchaudio {_version('torchaudio')}, "
              f"python {sys.version.split()[0]})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
