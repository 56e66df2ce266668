"""Separate Python environments for reward models that cannot share the trainer's packages.

``image-reward`` 1.5 needs ``transformers<=4.55.4`` while TRL 1.x needs ``>=4.56``, so its reward runs in a worker
process started from its own virtual environment (``rewards.image_reward``). ``setup_environment`` makes that
environment — the command ``unigrpo rewards setup image-reward``, run by ``make test`` — with the trainer's exact
torch and torchvision versions plus the pinned packages of its ``EnvironmentSpec``.

torch is not installed a second time: by default the environment *shares* the trainer's torch, torchvision and the
CUDA libraries they load (a folder of links to just those packages, named by a ``.pth`` file), so it costs the
reward's own packages only, and never pulls the multi-GB CUDA build onto a machine without a GPU. With
``torch_index_url`` (``--torch-index-url``, or ``$UNIGRPO_TORCH_INDEX_URL``; e.g. the CPU wheels at
https://download.pytorch.org/whl/cpu on a machine without CUDA) it gets its own torch of the same version from
that index instead. The reward's other packages (its pinned transformers) always stay its own.

Environments live in ``$UNIGRPO_ENVS_DIR/<name>`` (default ``~/.cache/unigrpo/envs/<name>``); pip's output goes to
``setup.log`` there, one progress line per stage to stdout. A finished setup writes ``unigrpo-environment.json``
with the spec it installed; an environment without it, or with another spec, or whose shared torch has gone, is not
ready and is set up again.

No torch imported here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import venv
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path

MARKER = "unigrpo-environment.json"
LOG = "setup.log"
SHARED = "shared-torch"  # the folder of links to the trainer's torch, torchvision and CUDA libraries
PTH = "unigrpo-shared-torch.pth"  # in the environment's site-packages: names SHARED
CUDA_LIBRARIES = ("nvidia-", "cuda-", "triton")  # torch's requirements that are its CUDA runtime (pinned by torch)


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


def _name(requirement: str) -> str:
    """The normalised project name of a requirement string ("nvidia-cudnn-cu13==9.2; …" → "nvidia-cudnn-cu13")."""
    return re.split(r"[\s;\[<>=!~(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def shared_distributions() -> list[str]:
    """torch, torchvision and the CUDA libraries they pull in, as installed in the trainer's environment.

    The CUDA libraries are followed through the requirements (markers aside: what is installed is what this
    machine needs); torch pins each exactly, so the reward environment's pip never wants to change them.
    """
    names, todo = [], ["torch", "torchvision"]
    while todo:
        name = todo.pop()
        if name in names:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        names.append(name)
        todo += [n for n in map(_name, dist.requires or []) if n.startswith(CUDA_LIBRARIES)]
    return names


def shared_entries() -> list[Path]:
    """The top-level folders and files (packages, ``.libs``, ``.dist-info``) of ``shared_distributions()`` in the
    trainer's site-packages."""
    entries = {}
    for name in shared_distributions():
        dist = distribution(name)
        for file in dist.files or []:
            top = file.parts[0]
            if top not in ("..", "__pycache__") and top not in entries:
                entries[top] = Path(dist.locate_file(top))
    return [entries[top] for top in sorted(entries)]


def site_packages(python: Path) -> Path:
    """The purelib folder of an environment's interpreter."""
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout
    return Path(out.strip())


def share_trainer_torch(root: Path, python: Path) -> int:
    """Link the trainer's torch, torchvision and CUDA libraries into ``root/shared-torch`` and name that folder in
    a ``.pth`` file of the environment, so its interpreter (and its pip) find them after its own packages; returns
    the number of links. Only these packages are linked: the reward's transformers & co. stay its own.

    The links point into the trainer's environment: nothing here may be uninstalled or upgraded by pip (torch's
    exact pins guarantee it), and removing the environment removes the links, never their targets.
    """
    folder = root / SHARED
    folder.mkdir(parents=True, exist_ok=True)
    entries = shared_entries()
    for target in entries:
        link = folder / target.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=target.is_dir())
    (site_packages(python) / PTH).write_text(f"{folder}\n")
    return len(entries)


def is_ready(name: str, path: str | os.PathLike | None = None) -> bool:
    """Set up completely, with the requirements this version of unigrpo asks for (and, when it shares the
    trainer's torch, with that torch still there)."""
    root = environment_path(name, path)
    try:
        recorded = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return False
    shared_ok = recorded.get("torch") != "shared" or (root / SHARED / "torch" / "__init__.py").exists()
    return (recorded.get("requirements") == requirements_for(name) and environment_python(name, path).exists()
            and shared_ok)


def _run_stage(command: list[str], log: Path, what: str) -> None:
    """One setup stage; its output appended to ``log``. On failure: the stage and the log's last lines."""
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(command)}\n")
        f.flush()
        result = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().strip().splitlines()[-15:])
        raise RewardEnvironmentError(f"{what} failed (`{' '.join(command[1:])}`; full output in {log}):\n{tail}")


def setup_environment(name: str, path: str | os.PathLike | None = None, force: bool = False,
                      quiet: bool = False, torch_index_url: str | None = None) -> Path:
    """Create (or complete) environment ``name`` and return its interpreter; a ready one is left as it is.

    Stages: ``python -m venv``; the trainer's torch shared by links, or (``torch_index_url``, default
    ``$UNIGRPO_TORCH_INDEX_URL``) torch and torchvision of the trainer's versions installed from that index; one
    ``pip install`` of ``requirements_for(name)``; an import of the spec's module to prove it works. pip's output
    goes to ``setup.log`` in the environment; each stage prints one line to stdout unless ``quiet``. Raises
    ``RewardEnvironmentError`` with the log's last lines on failure.
    """
    spec, root = _spec(name), environment_path(name, path)
    if is_ready(name, path) and not force:
        return environment_python(name, path)
    torch_index_url = torch_index_url or os.environ.get("UNIGRPO_TORCH_INDEX_URL") or None
    requirements = requirements_for(name)
    source = None if not spec.with_torch else torch_index_url or "shared"
    stages = 3 + (source is not None)
    say = (lambda *a: None) if quiet else (lambda i, text: print(f"unigrpo: {name} [{i}/{stages}] {text}", flush=True))
    (root / MARKER).unlink(missing_ok=True)
    venv.EnvBuilder(with_pip=True, clear=force).create(root)  # clear: removes links, never what they point to
    log, python = root / LOG, environment_python(name, path)
    log.write_text(f"unigrpo rewards setup {name}: {' '.join(requirements)}\n")
    say(1, f"created the environment {root} (pip's output: {log})")
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    if source == "shared":
        say(2, f"shared the trainer's torch, torchvision and CUDA libraries: {share_trainer_torch(root, python)} "
               f"links in {root / SHARED}")
    elif source is not None:
        (site_packages(python) / PTH).unlink(missing_ok=True)  # no longer shared
        say(2, f"installing {' '.join(torch_requirements())} from {source}")
        _run_stage(pip + ["--index-url", source, *torch_requirements()], log, f"installing torch from {source}")
    say(stages - 1, f"installing {' '.join(spec.requirements)}")
    _run_stage(pip + requirements, log, f"setting up reward environment {name!r}")
    if spec.check_import:
        say(stages, f"checking `import {spec.check_import}`")
        _run_stage([str(python), "-c", f"import {spec.check_import}"], log, f"importing {spec.check_import}")
    (root / MARKER).write_text(json.dumps({"name": name, **asdict(spec), "requirements": requirements,
                                           "torch": source}, indent=1))
    if not quiet:
        print(f"unigrpo: {name} ready: {python}", flush=True)
    return python
