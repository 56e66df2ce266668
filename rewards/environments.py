"""Separate Python environments for reward models that cannot share the trainer's packages.

``image-reward`` 1.5 needs ``transformers<=4.55.4`` while TRL 1.x needs ``>=4.56``, so its reward runs in a worker
process started from its own virtual environment (``rewards.image_reward``). ``setup_environment`` makes that
environment — the command ``unigrpo rewards setup image-reward`` — with the trainer's exact torch and torchvision
versions (so no install ever pulls another torch) plus the pinned packages of its ``EnvironmentSpec``.

Environments live in ``$UNIGRPO_ENVS_DIR/<name>`` (default ``~/.cache/unigrpo/envs/<name>``). A finished setup
writes ``unigrpo-environment.json`` with the spec it installed; an environment without it, or with another spec,
is not ready and is set up again.

No torch imported here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

MARKER = "unigrpo-environment.json"


@dataclass(frozen=True)
class EnvironmentSpec:
    """What one reward environment holds: pinned requirements, whether it gets the trainer's torch, an import check."""

    requirements: tuple[str, ...]
    with_torch: bool = True
    check_import: str = ""


SPECS: dict[str, EnvironmentSpec] = {
    # image-reward 1.5 (THUDM/ImageReward) as it installs today: its own pins (timm, fairscale), the transformers
    # it was written for, the OpenAI `clip` module its package imports, and setuptools < 80 for the
    # `pkg_resources` that module needs.
    "image-reward": EnvironmentSpec(
        requirements=("image-reward==1.5", "transformers>=4.27.4,<=4.55.4", "timm==0.6.13", "fairscale==0.4.13",
                      "openai-clip==1.0.1", "setuptools<80", "pillow"),
        check_import="ImageReward",
    ),
}


class RewardEnvironmentError(RuntimeError):
    """A reward environment is missing or could not be made."""


def _spec(name: str) -> EnvironmentSpec:
    if name not in SPECS:
        raise ValueError(f"unknown reward environment {name!r}; known: {', '.join(sorted(SPECS))}")
    return SPECS[name]


def environments_dir() -> Path:
    return Path(os.environ.get("UNIGRPO_ENVS_DIR") or Path.home() / ".cache" / "unigrpo" / "envs")


def environment_path(name: str, path: str | os.PathLike | None = None) -> Path:
    _spec(name)
    return Path(path) if path is not None else environments_dir() / name


def environment_python(name: str, path: str | os.PathLike | None = None) -> Path:
    """The interpreter of environment ``name`` (it may not exist yet)."""
    return environment_path(name, path) / "bin" / "python"


def torch_requirements() -> list[str]:
    """``torch==X`` and ``torchvision==Y`` exactly as installed in this (the trainer's) environment."""
    pins = []
    for package in ("torch", "torchvision"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            if package == "torch":
                raise RewardEnvironmentError("torch is not installed in the trainer's environment; install it first")
    return pins


def requirements_for(name: str) -> list[str]:
    spec = _spec(name)
    return (torch_requirements() if spec.with_torch else []) + list(spec.requirements)


def is_ready(name: str, path: str | os.PathLike | None = None) -> bool:
    """Set up completely, with the requirements this version of unigrpo asks for."""
    marker = environment_path(name, path) / MARKER
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("requirements") == requirements_for(name) and environment_python(name, path).exists()


def setup_environment(name: str, path: str | os.PathLike | None = None, force: bool = False,
                      quiet: bool = False) -> Path:
    """Create (or complete) environment ``name`` and return its interpreter; a ready one is left as it is.

    Runs ``python -m venv`` and one ``pip install`` of ``requirements_for(name)``, then imports the spec's module
    in the new environment to prove it works. Raises ``RewardEnvironmentError`` with pip's last lines on failure.
    """
    spec, root = _spec(name), environment_path(name, path)
    if is_ready(name, path) and not force:
        return environment_python(name, path)
    requirements = requirements_for(name)
    (root / MARKER).unlink(missing_ok=True)
    log = None if not quiet else subprocess.DEVNULL
    print(f"unigrpo: setting up reward environment {name!r} in {root}: {' '.join(requirements)}", file=sys.stderr)
    venv.EnvBuilder(with_pip=True, clear=force).create(root)
    python = environment_python(name, path)
    steps = [[str(python), "-m", "pip", "install", "--disable-pip-version-check", *(["-q"] if quiet else []),
              *requirements]]
    if spec.check_import:
        steps.append([str(python), "-c", f"import {spec.check_import}"])
    for command in steps:
        result = subprocess.run(command, stdout=log, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise RewardEnvironmentError(f"setting up reward environment {name!r} failed at `{' '.join(command[2:])}`:\n"
                                    f"{tail}")
    (root / MARKER).write_text(json.dumps({"name": name, **asdict(spec), "requirements": requirements}, indent=1))
    print(f"unigrpo: reward environment {name!r} ready: {python}", file=sys.stderr)
    return python
