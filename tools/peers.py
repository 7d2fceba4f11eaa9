"""Virtual environments for the peers (Open-Unmix, Spleeter), made on first use, never dependencies of tfsep.

`openunmix_python()` returns the interpreter of `.venv-openunmix` (git-ignored), creating it
with CPU PyTorch and `openunmix` from PyPI. openunmix imports torchaudio only for file
I/O; scripts run in that environment put a placeholder module in its place.

`spleeter_python()` returns the interpreter of `.venv-spleeter`, with the real Spleeter 2.4.2
on its own TensorFlow 2.12.1 (Spleeter pins it, and Python < 3.12), for
`tools/spleeter_recipe.py`. Run `python tools/peers.py spleeter` to make it ahead of the tests.
"""

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPENUNMIX_ENV = ROOT / ".venv-openunmix"
OPENUNMIX_PACKAGES = ["torch==2.13.0+cpu", "numpy>=1.26,<2.5", "tqdm", "soundfile>=0.12"]
OPENUNMIX_VERSION = "openunmix==1.3.0"  # installed without its torchaudio dependency
SPLEETER_ENV = ROOT / ".venv-spleeter"
SPLEETER_PACKAGES = ["spleeter==2.4.2"]  # pulls tensorflow 2.12.1, numpy 1.24


def openunmix_python():
    """Path of the Python interpreter that has torch and openunmix, creating its venv if needed."""
    python = OPENUNMIX_ENV / "bin" / "python"
    if python.is_file() and _imports(python, "torch, soundfile, openunmix.model"):
        return python
    print(f"creating {OPENUNMIX_ENV} with {' '.join(OPENUNMIX_PACKAGES)} {OPENUNMIX_VERSION}", file=sys.stderr)
    venv.create(OPENUNMIX_ENV, with_pip=True, clear=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + OPENUNMIX_PACKAGES, check=True)
    subprocess.run(pip + ["--no-deps", OPENUNMIX_VERSION], check=True)
    if not _imports(python, "torch, soundfile, openunmix.model"):
        raise RuntimeError(f"{OPENUNMIX_ENV}: torch or openunmix does not import after installing")
    return python


def _imports(python, modules):
    code = f"import sys, types; sys.modules['torchaudio'] = types.ModuleType('torchaudio'); import {modules}"
    return subprocess.run([str(python), "-c", code], capture_output=True).returncode == 0


def spleeter_python(create=True):
    """Path of the Python interpreter that has the real Spleeter, creating its venv if needed (else None)."""
    python = SPLEETER_ENV / "bin" / "python"
    if python.is_file() and _imports(python, "spleeter.model, tensorflow"):
        return python
    if not create:
        return None
    print(f"creating {SPLEETER_ENV} with {' '.join(SPLEETER_PACKAGES)}", file=sys.stderr)
    venv.create(SPLEETER_ENV, with_pip=True, clear=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    *SPLEETER_PACKAGES], check=True)
    if not _imports(python, "spleeter.model, tensorflow"):
        raise RuntimeError(f"{SPLEETER_ENV}: spleeter does not import after installing")
    return python


if __name__ == "__main__":
    {"openunmix": openunmix_python, "spleeter": spleeter_python}[sys.argv[1]]()
