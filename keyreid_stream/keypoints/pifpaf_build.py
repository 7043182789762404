"""Build and install openpifpaf 0.13.11 against the PyTorch already installed (``keyreid-stream keypoints install-pifpaf``).

openpifpaf is published as source only, and that source cannot be installed as it is next to a current torch:

* its build metadata pins ``torch==1.13.1`` (build isolation would download that torch), so it is built with
  ``--no-build-isolation`` against the environment's torch;
* its C++ extension is compiled with ``-std=c++17``, while current torch headers (2.14) need C++20;
* its install requirements pin ``torch==1.13.1`` and ``torchvision==0.14.1``, which would make pip replace the
  installed torch, or leave ``pip check`` broken.

This module downloads the sdist (checked against its sha256), rewrites exactly those three strings in its
``setup.py``, builds a wheel and caches it per (torch version, Python version, platform), then installs it. The
next install from the same cache takes seconds. A C++ compiler and the Python headers are needed for the build.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

__all__ = ["OPENPIFPAF_VERSION", "PifPafBuildError", "install_openpifpaf", "patch_setup_py", "wheel_cache_dir"]

logger = logging.getLogger(__name__)

OPENPIFPAF_VERSION = "0.13.11"
SDIST_SHA256 = "f15936201fe5180fddda9e42437d4c41d6884e6130387e9e67dfc79240dcc61b"
SETUP_PY_PATCHES: tuple[tuple[str, str], ...] = (
    ("'-std=c++17' if not sys.platform", "'-std=c++20' if not sys.platform"),
    ("'torch==1.13.1',", "'torch',"),
    ("'torchvision==0.14.1',", "'torchvision',"),
)


class PifPafBuildError(RuntimeError):
    """openpifpaf could not be built or installed; the message says which step failed and what to do."""


def _cache_root() -> Path:
    if os.environ.get("KEYREID_STREAM_CACHE"):
        return Path(os.environ["KEYREID_STREAM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "keyreid-stream"


def _run(command: list[str], what: str, cwd: Path | None = None) -> str:
    logger.debug("running %s", " ".join(command))
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise PifPafBuildError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result.stdout


def _probe(python: str) -> dict[str, str]:
    """torch version, Python version, platform tag and header folder of the target interpreter."""
    code = (
        "import sys, sysconfig, platform, torch; "
        "print(torch.__version__.split('+')[0]); print('%d.%d' % sys.version_info[:2]); "
        "print(sysconfig.get_platform()); print(sysconfig.get_paths()['include'])"
    )
    lines = _run([python, "-c", code], f"importing torch with {python}").split()
    return dict(zip(("torch", "python", "platform", "include"), lines))


def wheel_cache_dir(torch_version: str, python_version: str, platform_tag: str) -> Path:
    """Where the wheel built for this torch / Python / platform is kept."""
    tag = f"openpifpaf-{OPENPIFPAF_VERSION}-torch{torch_version}-py{python_version}-{platform_tag}"
    return _cache_root() / "wheels" / tag


def patch_setup_py(text: str) -> str:
    """openpifpaf's ``setup.py`` with C++20 and without the torch pins; every patch must apply exactly once."""
    for old, new in SETUP_PY_PATCHES:
        if text.count(old) != 1:
            raise PifPafBuildError(
                f"openpifpaf's setup.py does not contain {old!r} exactly once: not the expected "
                f"{OPENPIFPAF_VERSION} source"
            )
        text = text.replace(old, new)
    return text


def _check_toolchain(include_dir: str) -> None:
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not compiler:
        raise PifPafBuildError(
            "no C++ compiler found (openpifpaf compiles a C++ extension); Debian/Ubuntu: apt-get install g++"
        )
    if not Path(include_dir, "Python.h").exists():
        raise PifPafBuildError(
            f"Python headers missing ({include_dir}/Python.h); Debian/Ubuntu: apt-get install python3-dev"
        )


def _download_sdist(python: str, folder: Path) -> Path:
    _run([python, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
          "--quiet", f"openpifpaf=={OPENPIFPAF_VERSION}", "-d", str(folder)], "downloading the openpifpaf source")
    sdist = folder / f"openpifpaf-{OPENPIFPAF_VERSION}.tar.gz"
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise PifPafBuildError(f"{sdist.name} has sha256 {digest}, expected {SDIST_SHA256}; not installing it")
    return sdist


def _build_wheel(python: str, info: dict[str, str], out_dir: Path) -> Path:
    _check_toolchain(info["include"])
    with tempfile.TemporaryDirectory(prefix="openpifpaf-build-") as scratch:
        sdist = _download_sdist(python, Path(scratch))
        with tarfile.open(sdist) as archive:
            archive.extractall(scratch, filter="data")
        source = Path(scratch) / f"openpifpaf-{OPENPIFPAF_VERSION}"
        setup_py = source / "setup.py"
        setup_py.write_text(patch_setup_py(setup_py.read_text(encoding="utf-8")), encoding="utf-8")
        logger.info("compiling openpifpaf %s against torch %s (a few minutes)", OPENPIFPAF_VERSION, info["torch"])
        staging = Path(scratch) / "wheel"
        _run([python, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--quiet", "-w", str(staging),
              str(source)], "building openpifpaf")
        built = next(staging.glob("openpifpaf-*.whl"))
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / built.name
        shutil.move(str(built), target)
    return target


def _installed_version(python: str) -> str | None:
    code = (  # the same matplotlib alias as keypoints.pifpaf.import_openpifpaf
        "import matplotlib, matplotlib.cm as cm\n"
        "if not hasattr(cm, 'get_cmap'): cm.get_cmap = matplotlib.colormaps.get_cmap\n"
        "import openpifpaf, importlib.metadata as m; print(m.version('openpifpaf'))"
    )
    result = subprocess.run([python, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "MPLBACKEND": "Agg"})
    return result.stdout.strip() or None if result.returncode == 0 else None


def install_openpifpaf(python: str | None = None, *, force: bool = False) -> Path | None:
    """Make ``import openpifpaf`` work in the environment of ``python`` (default: this one).

    Returns the wheel installed, or None when the right version was already there (and ``force`` is false).
    """
    python = python or sys.executable
    if not force and _installed_version(python) == OPENPIFPAF_VERSION:
        logger.info("openpifpaf %s is already installed", OPENPIFPAF_VERSION)
        return None
    info = _probe(python)
    cache = wheel_cache_dir(info["torch"], info["python"], info["platform"] or platform.machine())
    wheels = sorted(cache.glob("openpifpaf-*.whl"))
    wheel = wheels[-1] if wheels and not force else _build_wheel(python, info, cache)
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel)],
         "installing the openpifpaf wheel")
    if _installed_version(python) != OPENPIFPAF_VERSION:
        raise PifPafBuildError(f"installed {wheel.name} but 'import openpifpaf' still fails in {python}")
    logger.info("openpifpaf %s installed from %s", OPENPIFPAF_VERSION, wheel)
    return wheel


if __name__ == "__main__":  # pragma: no cover - used by scripts/dev before the package's CLI is importable
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        install_openpifpaf(sys.argv[1] if len(sys.argv) > 1 else None)
    except PifPafBuildError as error:
        sys.stderr.write(f"install-pifpaf: {error}\n")
        raise SystemExit(1) from None
