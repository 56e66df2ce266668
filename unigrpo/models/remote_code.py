"""Keeping a checkpoint's own modelling code (``auto_map`` + ``.py`` files) in the folders saved from it.

The hub's LLaDA-8B-Instruct and MMaDA-8B ship their code beside the weights: ``config.json``'s ``auto_map`` names
``configuration_llada.LLaDAConfig`` and ``modeling_llada.LLaDAModelLM``, and ``from_pretrained(...,
trust_remote_code=True)`` imports those files. This project loads such a checkpoint into its own classes (the code
is never run), and the saved config keeps ``auto_map``; copying the files too keeps a fine-tuned folder loadable by
the published code, with or without this library installed.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)


def auto_map_modules(auto_map: dict) -> list[str]:
    """Module names that ``auto_map`` points at (``"modeling_llada.LLaDAModelLM"`` → ``modeling_llada``).

    Values may be a list (a tokenizer's slow and fast class, either None); ``repo--module.Class`` names code in
    another hub repository, which is not part of this checkpoint's folder."""
    modules = []
    for value in auto_map.values():
        for reference in value if isinstance(value, (list, tuple)) else [value]:
            if reference and "--" not in reference:
                modules.append(reference.rsplit(".", 1)[0])
    return sorted(set(modules))


def remote_code_files(folder: str | Path) -> list[Path]:
    """The ``.py`` files of ``folder`` that its ``config.json``'s ``auto_map`` needs, with their relative imports.

    Empty when the folder has no config.json or no ``auto_map``. A named file that is absent is returned too, so
    the caller can say which one is missing."""
    from transformers.dynamic_module_utils import get_relative_import_files

    config = Path(folder) / "config.json"
    if not config.is_file():
        return []
    auto_map = json.loads(config.read_text()).get("auto_map") or {}
    files = [Path(folder) / f"{module.replace('.', '/')}.py" for module in auto_map_modules(auto_map)]
    needed = set(files)
    for file in files:
        if file.is_file():
            needed.update(Path(f) for f in get_relative_import_files(file))
    return sorted(needed)


def copy_remote_code(source: str | Path | None, target: str | Path) -> list[str]:
    """Copy the code files that ``source``'s ``auto_map`` needs into ``target``; returns the names copied.

    ``source`` is the folder the model was loaded from (``model.name_or_path``); nothing happens when it is not a
    folder (a model built from a config) or ships no code. A missing file is a warning, not an error: the weights
    and config are saved either way, only ``trust_remote_code`` loading of ``target`` would fail."""
    if not source or not Path(source).is_dir():
        return []
    source, target = Path(source), Path(target)
    copied = []
    for file in remote_code_files(source):
        destination = target / file.relative_to(source)
        if not file.is_file():
            logger.warning("%s names %s in auto_map, but the file is missing; %s will not load with "
                           "trust_remote_code=True", source / "config.json", file.name, target)
        elif destination.resolve() != file.resolve():  # saving into the folder it came from: already there
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, destination)
            copied.append(file.name)
    return copied
