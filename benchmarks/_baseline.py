"""The refiner of an earlier git revision, importable next to the current one (benchmarks only).

``load_refine(rev)`` extracts ``videomama/`` of ``rev`` (with ``git archive``) into a cache
folder under the system temp dir as a package named ``videomama_<rev>`` and imports its
``refine`` module, so one process can time and score both versions on the same frames.
"""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REV = "8ebb5ec"  # main before issue 10's refiner work


def load_refine(rev: str = DEFAULT_REV) -> ModuleType:
    """The ``refine`` module of ``rev`` (a commit-ish of this repository)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev], check=True,
                         capture_output=True, text=True).stdout.strip()
    name = f"videomama_{sha}"
    root = Path(tempfile.gettempdir()) / "videomama_baselines"
    pkg = root / name
    if not pkg.exists():
        blob = subprocess.run(["git", "-C", str(REPO), "archive", sha, "videomama"], check=True,
                              capture_output=True).stdout
        tmp = root / f".{name}.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            tar.extractall(tmp, filter="data")
        (tmp / "videomama").rename(pkg)
        tmp.rmdir()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    # The refiner moved from videomama/refine.py to videomama/imaging/refine.py.
    sub = "refine" if (pkg / "refine.py").exists() else "imaging.refine"
    return importlib.import_module(f"{name}.{sub}")
