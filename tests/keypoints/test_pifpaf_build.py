"""openpifpaf's source build: the setup.py patches, the wheel cache folder, the already-installed shortcut."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from keyreid_stream.keypoints.pifpaf_build import (
    OPENPIFPAF_VERSION,
    SETUP_PY_PATCHES,
    PifPafBuildError,
    install_openpifpaf,
    patch_setup_py,
    wheel_cache_dir,
)

# A shortened openpifpaf 0.13.11 setup.py: the three lines the patches rewrite, among lines they must keep.
SETUP_PY = """\
import sys
from setuptools import setup

EXTRA_COMPILE_ARGS = [
    '-std=c++17' if not sys.platform.startswith("win") else '/std:c++17',
]

setup(
    name='openpifpaf',
    install_requires=[
        'importlib_metadata!=3.8.0',  # torch 1.8.0 requires this
        'numpy>=1.16',
        'pysparkling',  # for log analysis
        'python-json-logger',
        'torch==1.13.1',
        'torchvision==0.14.1',
        'pillow!=8.3.0',
    ],
    extras_require={'dev': ['torch==1.13.1']},  # not the install requirement: left alone
)
"""


def test_patch_setup_py() -> None:
    patched = patch_setup_py(SETUP_PY)
    assert "'-std=c++20' if not sys.platform" in patched
    assert "        'torch',\n" in patched
    assert "        'torchvision',\n" in patched
    assert "'-std=c++17' if not" not in patched and "'torchvision==0.14.1'" not in patched
    assert "['torch==1.13.1']" in patched  # only the exact install_requires entry changes
    assert "'/std:c++17'" in patched
    # nothing else changed: undoing the three patches gives the original back
    restored = patched
    for old, new in SETUP_PY_PATCHES:
        restored = restored.replace(new, old)
    assert restored == SETUP_PY


def _without(text: str, old: str) -> str:
    return text.replace(old, "")


def _twice(text: str, old: str) -> str:
    return text.replace(old, f"{old}\n{old}")


@pytest.mark.parametrize("old", [old for old, _ in SETUP_PY_PATCHES])
@pytest.mark.parametrize("change", [_without, _twice])
def test_patch_setup_py_refuses_unexpected_source(old: str, change: Callable[[str, str], str]) -> None:
    text = change(SETUP_PY, old)
    assert text.count(old) != 1
    with pytest.raises(PifPafBuildError, match="exactly once"):
        patch_setup_py(text)


def test_patch_setup_py_refuses_other_versions() -> None:
    with pytest.raises(PifPafBuildError, match=OPENPIFPAF_VERSION):
        patch_setup_py(SETUP_PY.replace("torch==1.13.1',\n", "torch==1.8.0',\n"))


@pytest.mark.parametrize(
    ("env", "expected_root"),
    [
        ({"KEYREID_STREAM_CACHE": "cache", "XDG_CACHE_HOME": "xdg"}, "cache"),
        ({"KEYREID_STREAM_CACHE": "cache"}, "cache"),
        ({"KEYREID_STREAM_CACHE": "", "XDG_CACHE_HOME": "xdg"}, "xdg/keyreid-stream"),
        ({"XDG_CACHE_HOME": "xdg"}, "xdg/keyreid-stream"),
        ({"HOME": "home"}, "home/.cache/keyreid-stream"),
    ],
)
def test_wheel_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected_root: str
) -> None:
    for name in ("KEYREID_STREAM_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, str(tmp_path / value) if value else "")
    folder = wheel_cache_dir("2.10.0", "3.11", "linux-x86_64")
    assert folder.parent == tmp_path / expected_root / "wheels"
    assert folder.name == f"openpifpaf-{OPENPIFPAF_VERSION}-torch2.10.0-py3.11-linux-x86_64"


@pytest.mark.parametrize(
    ("torch_version", "python_version", "platform_tag"),
    [
        ("2.10.0", "3.11", "linux-x86_64"),
        ("2.9.1", "3.11", "linux-x86_64"),
        ("2.10.0", "3.12", "linux-x86_64"),
        ("2.10.0", "3.11", "linux-aarch64"),
    ],
)
def test_wheel_cache_dir_separates_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    torch_version: str, python_version: str, platform_tag: str,
) -> None:
    monkeypatch.setenv("KEYREID_STREAM_CACHE", str(tmp_path))
    folder = wheel_cache_dir(torch_version, python_version, platform_tag)
    assert f"torch{torch_version}" in folder.name and f"py{python_version}" in folder.name
    assert platform_tag in folder.name
    reference = wheel_cache_dir("2.10.0", "3.11", "linux-x86_64")
    changed = (torch_version, python_version, platform_tag) != ("2.10.0", "3.11", "linux-x86_64")
    assert (folder != reference) == changed


@pytest.mark.slow  # imports openpifpaf in a subprocess
def test_install_openpifpaf_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """openpifpaf is installed here (the pifpaf tests need it): nothing is downloaded, built or cached."""
    monkeypatch.setenv("KEYREID_STREAM_CACHE", str(tmp_path / "cache"))
    assert install_openpifpaf() is None
    assert not (tmp_path / "cache").exists()
