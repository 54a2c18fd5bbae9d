"""Discovery of the models a machine already has: OpenAI-compatible servers on loopback and GGUF files.

* Servers: ``GET <base>/models`` on Ollama (11434), llama.cpp's server (8080), LM Studio (1234) and vLLM (8000)
  on 127.0.0.1, plus every base URL in ``$FUSIONGRAPH_LOCAL_URLS`` (comma- or space-separated, e.g.
  ``http://127.0.0.1:9000/v1``). The probes run concurrently with a short timeout: with nothing listening a
  run costs well under half a second.
* Files: ``*.gguf`` under the Hugging Face hub cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or
  ``~/.cache/huggingface/hub``), LM Studio's models folder (``~/.lmstudio/models``, ``~/.cache/lm-studio/models``)
  and every directory in ``$FUSIONGRAPH_GGUF_DIRS`` (``os.pathsep``-separated). Each file's header is read
  (never the weights): parameter count, name, chat template, context length. A file that is not a GGUF, a
  vision projector (``mmproj*``) or a model too large for the free memory is skipped with a note.

Each model found becomes a :class:`~fusiongraph.models.roster.ModelSpec` with ``trusted: true`` (it runs on this
machine: a ``local_only`` run may use it), price 0, ``source: discovered:<url or path>`` and a ``strength``
(its parameter count in billions) that orders equal-priced models at cold start (7B before 1B before 135M).
models.yaml's optional ``discovery:`` section excludes or pins discovered models (:func:`apply_policy`).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from fusiongraph.settings import settings

DEFAULT_PORTS = {11434: "ollama", 8080: "llama.cpp", 1234: "lmstudio", 8000: "vllm"}
CONNECT_TIMEOUT_S = 0.2
READ_TIMEOUT_S = 0.4
MAX_LOCAL_CONTEXT = 4096  # n_ctx of a discovered GGUF (its KV cache grows with it)
MEMORY_HEADROOM = 1.2  # a GGUF needs about its file size in memory, plus the KV cache and scratch buffers


@dataclass
class Discovery:
    """What one discovery run found: roster rows (ModelSpec keyword arguments) and notes on what it skipped."""

    specs: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def discover_enabled(knob: bool | None) -> bool:
    """The ``discover_local`` knob: True/False as given; None reads ``$FUSIONGRAPH_DISCOVER_LOCAL`` (default on)."""
    if knob is not None:
        return bool(knob)
    return settings().discover_local


# ---------------------------------------------------------------- names and sizes


_SIZE = re.compile(r"(?<![a-z0-9.])(?:(\d+)x)?(\d+(?:\.\d+)?)([bmk])(?![a-z0-9])", re.IGNORECASE)
_SCALE = {"b": 1e9, "m": 1e6, "k": 1e3}


def params_from_name(name: str) -> int | None:
    """A parameter count read from a model name or size label: 'llama3.1:8b' 8e9, 'SmolLM2-135M' 135e6,
    'mixtral-8x7b' 56e9; None if the name has none."""
    best = None
    for experts, number, unit in _SIZE.findall(name or ""):
        n = float(number) * _SCALE[unit.lower()] * (int(experts) if experts else 1)
        best = max(best or 0, int(n))
    return best


def strength_of(params: int | None) -> float | None:
    """The roster's strength estimate: the parameter count in billions (None: unknown)."""
    return round(params / 1e9, 4) if params else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:@/-]+", "-", text).strip("-") or "model"


# ---------------------------------------------------------------- servers


def server_urls() -> list[str]:
    """The base URLs to probe: the usual loopback ports, then ``$FUSIONGRAPH_LOCAL_URLS``."""
    urls = [f"http://127.0.0.1:{port}/v1" for port in DEFAULT_PORTS]
    for raw in re.split(r"[,\s]+", settings().local_urls):
        if raw:
            urls.append(normalise_base(raw))
    seen: list[str] = []
    for u in urls:
        if u not in seen:
            seen.append(u)
    return seen


def normalise_base(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if url.endswith("/models"):
        url = url[: -len("/models")]
    if not url.endswith("/v1"):
        url += "/v1"
    return url


def is_loopback(hostname: str | None) -> bool:
    if not hostname:
        return False
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _listening(base: str, timeout: float) -> bool:
    """A plain TCP connect first: nothing listening costs a refused connection, not an HTTP client."""
    parts = urlsplit(base)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _probe(base: str, timeout: tuple[float, float]) -> tuple[list[dict], str | None]:
    """(rows, note) for one base URL; nothing listening is not worth a note."""
    if not _listening(base, timeout[0]):
        return [], None
    import httpx

    t = httpx.Timeout(timeout[1], connect=timeout[0])
    try:
        # trust_env=False: a proxy from the environment must never see loopback traffic
        with httpx.Client(timeout=t, trust_env=False) as client:
            reply = client.get(f"{base}/models")
    except httpx.HTTPError as exc:
        return [], f"skipped {base}: GET /models failed ({type(exc).__name__})"
    if reply.status_code != 200:
        return [], f"skipped {base}: GET /models answered HTTP {reply.status_code}"
    try:
        data = reply.json()
        items = data["data"]
        if not isinstance(items, list):
            raise TypeError
        names = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
                raise TypeError
            if item.get("owned_by") == "fusiongraph":  # our own endpoint (never route to ourselves)
                continue
            names.append((item["id"], item.get("meta") if isinstance(item.get("meta"), dict) else {}))
    except (ValueError, KeyError, TypeError):
        return [], f"skipped {base}: its /models reply is not an OpenAI model list"
    host = urlsplit(base)
    where = f"{host.hostname}:{host.port}" if host.port else (host.hostname or base)
    loopback = is_loopback(host.hostname)
    port_tag = str(host.port) if loopback and host.port else where
    rows = []
    for name, meta in names:
        if any(w in name.lower() for w in ("embed", "rerank")):
            continue  # not a chat model
        # llama.cpp's own server reports the model's size and trained context in `meta`; else read the name
        params = meta.get("n_params") if isinstance(meta.get("n_params"), int) else params_from_name(name)
        extra = {}
        if isinstance(meta.get("n_ctx_train"), int) and meta["n_ctx_train"] > 0:
            extra["context"] = meta["n_ctx_train"]
        rows.append(
            extra
            | {
                "id": f"{_slug(name)}@{port_tag}",
                "kind": "openai_compatible",
                "description": f"{name} served at {base} (discovered)",
                "base_url": base,
                "model": name,
                "price_in": 0.0,
                "price_out": 0.0,
                # only a server on this machine is trusted with sensitive or local-only work
                "trusted": loopback,
                "source": f"discovered:{base}",
                "strength": strength_of(params),
            }
        )
    return rows, None


def probe_servers(urls: list[str] | None = None, timeout: tuple[float, float] | None = None) -> Discovery:
    """Probe each base URL's ``/models`` concurrently (connect and read timeouts in seconds)."""
    urls = server_urls() if urls is None else [normalise_base(u) for u in urls]
    timeout = timeout or (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
    found = Discovery()
    if not urls:
        return found
    with ThreadPoolExecutor(max_workers=min(16, len(urls))) as pool:
        for rows, note in pool.map(lambda u: _probe(u, timeout), urls):
            found.specs.extend(rows)
            if note:
                found.notes.append(note)
    return found


# ---------------------------------------------------------------- GGUF files


class NotGGUF(ValueError):
    pass


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
WANTED_KEYS = (
    "general.parameter_count",
    "general.size_label",
    "general.name",
    "general.architecture",
    "general.type",
    "tokenizer.chat_template",
)


def _read(f: BinaryIO, n: int) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise NotGGUF("truncated header")
    return b


def _unpack(f: BinaryIO, fmt: str):
    return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]


def _string(f: BinaryIO, wide: bool) -> bytes:
    n = _unpack(f, "<Q" if wide else "<I")
    if n > 1 << 26:
        raise NotGGUF("implausible string length")
    return _read(f, n)


def _value(f: BinaryIO, vtype: int, wide: bool, keep: bool) -> Any:
    if vtype in _SCALARS:
        return _unpack(f, _SCALARS[vtype])
    if vtype == 8:
        s = _string(f, wide)
        return s.decode("utf-8", "replace") if keep else None
    if vtype == 9:
        itype = _unpack(f, "<I")
        n = _unpack(f, "<Q" if wide else "<I")
        if itype in _SCALARS:  # skip a numeric array in one seek
            f.seek(n * struct.calcsize(_SCALARS[itype]), os.SEEK_CUR)
            return None
        for _ in range(n):
            _value(f, itype, wide, False)
        return None
    raise NotGGUF(f"unknown value type {vtype}")


def read_gguf_metadata(path: str | Path) -> dict:
    """The header of a GGUF file: the wanted keys, ``<arch>.context_length``, ``parameters`` (from
    general.parameter_count, else summed over the tensor shapes) and ``file_size``. Raises NotGGUF."""
    path = Path(path)
    meta: dict[str, Any] = {"file_size": path.stat().st_size}
    with open(path, "rb", buffering=1 << 20) as f:
        if f.read(4) != b"GGUF":
            raise NotGGUF("no GGUF magic")
        version = _unpack(f, "<I")
        if version not in (1, 2, 3):
            raise NotGGUF(f"unsupported GGUF version {version}")
        wide = version >= 2
        n_tensors = _unpack(f, "<Q" if wide else "<I")
        n_kv = _unpack(f, "<Q" if wide else "<I")
        if n_kv > 1 << 20 or n_tensors > 1 << 24:
            raise NotGGUF("implausible header counts")
        for _ in range(n_kv):
            key = _string(f, wide).decode("utf-8", "replace")
            vtype = _unpack(f, "<I")
            keep = key in WANTED_KEYS or key.endswith(".context_length")
            value = _value(f, vtype, wide, keep)
            if keep:
                meta[key] = value
        if not meta.get("general.parameter_count"):
            total = 0
            for _ in range(n_tensors):
                _string(f, wide)
                n_dims = _unpack(f, "<I")
                if n_dims > 8:
                    raise NotGGUF("implausible tensor shape")
                count = 1
                for _d in range(n_dims):
                    count *= _unpack(f, "<Q" if wide else "<I")
                _read(f, 12)  # type (uint32) and offset (uint64)
                total += count
            meta["parameters"] = total or None
        else:
            meta["parameters"] = int(meta["general.parameter_count"])
    arch = meta.get("general.architecture")
    meta["context_length"] = meta.get(f"{arch}.context_length") if arch else None
    return meta


def gguf_dirs() -> list[Path]:
    """Where GGUF files usually are, plus ``$FUSIONGRAPH_GGUF_DIRS``."""
    home = Path.home()
    hf = os.environ.get("HF_HUB_CACHE") or (
        str(Path(os.environ["HF_HOME"]) / "hub") if os.environ.get("HF_HOME") else str(home / ".cache/huggingface/hub")
    )
    dirs = [Path(hf), home / ".lmstudio/models", home / ".cache/lm-studio/models"]
    dirs += [Path(d) for d in settings().gguf_dirs.split(os.pathsep) if d.strip()]
    return [d.expanduser() for d in dirs]


def available_memory() -> int | None:
    """Bytes of memory free for a new model (MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def _label(path: Path) -> str:
    """A readable name: the HF repo (models--org--name) for a hub-cache file, else the file's stem."""
    for part in path.parts:
        if part.startswith("models--"):
            return part[len("models--") :].replace("--", "/") + "/" + path.stem
    return path.stem


def find_gguf_files(dirs: list[Path] | None = None, memory: int | None = -1) -> Discovery:
    """GGUF chat models under `dirs` (default :func:`gguf_dirs`); `memory` in bytes (-1: measure it)."""
    dirs = gguf_dirs() if dirs is None else [Path(d).expanduser() for d in dirs]
    memory = available_memory() if memory == -1 else memory
    found = Discovery()
    seen: set[Path] = set()
    ids: set[str] = set()
    for root in dirs:
        if not root.is_dir():
            continue
        for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
            names = [n for n in filenames if n.lower().endswith(".gguf")]
            projectors = [n for n in names if "mmproj" in n.lower()]
            for name in sorted(names):
                path = Path(dirpath) / name
                try:
                    real = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    continue
                if real in seen or name in projectors:
                    continue
                split = _SPLIT.search(name)
                if split and split.group(1) != "00001":
                    continue  # a later shard of a split GGUF: llama.cpp loads it through the first
                seen.add(real)
                try:
                    meta = read_gguf_metadata(real)
                except (NotGGUF, OSError) as exc:
                    found.notes.append(f"skipped {path}: not a readable GGUF ({exc})")
                    continue
                if meta.get("general.type") not in (None, "model") or meta.get("general.architecture") == "clip":
                    continue  # an adapter or a projector, not a chat model
                need = int(meta["file_size"] * MEMORY_HEADROOM)
                if memory is not None and need > memory:
                    found.notes.append(
                        f"skipped {path}: needs about {need / 2**30:.1f} GiB, {memory / 2**30:.1f} GiB free"
                    )
                    continue
                params = meta.get("parameters") or params_from_name(
                    str(meta.get("general.size_label") or "") + " " + str(meta.get("general.name") or "") + " " + name
                )
                caps = []
                template = meta.get("tokenizer.chat_template") or ""
                if "tools" in template:
                    caps.append("tools")
                if projectors:
                    # shown, not routed: the in-process tier does not load the projector, so images never go
                    # to it ("vision" is what routes an image; a server that serves the projector can say so)
                    caps.append("vision-projector")
                label = _label(path)
                model_id = "gguf:" + _slug(label)
                while model_id in ids:
                    model_id += "+"
                ids.add(model_id)
                context = min(int(meta.get("context_length") or 2048), MAX_LOCAL_CONTEXT)
                row = {
                    "id": model_id,
                    "kind": "local",
                    "description": f"{meta.get('general.name') or label} ({path}, discovered)",
                    "gguf_path": str(path),
                    "context": context,
                    "price_in": 0.0,
                    "price_out": 0.0,
                    "trusted": True,
                    "source": f"discovered:{path}",
                    "strength": strength_of(params),
                    "capabilities": caps,
                }
                found.specs.append(row)
    return found


# ---------------------------------------------------------------- policy and the whole run


def _matches(row: dict, pattern: str) -> bool:
    fields_ = [row.get("id"), row.get("model"), row.get("gguf_path"), row.get("base_url"), row.get("source")]
    return any(isinstance(v, str) and fnmatch.fnmatchcase(v.lower(), pattern.lower()) for v in fields_)


def apply_policy(rows: list[dict], policy: dict | None, configured: list[dict]) -> Discovery:
    """Apply models.yaml's ``discovery:`` section to the discovered rows.

    ``exclude:`` a list of glob patterns (matched, case-insensitively, against a discovered model's id, served
    model name, file path, base URL or source): a match is dropped. ``pin:`` a mapping of pattern to ModelSpec
    fields (e.g. ``{"qwen*@1234": {id: qwen-local, strength: 7, price_in: 0.01}}``): a match keeps those
    settings, a fixed id above all (the outcome store keys on it). A discovered model that a models.yaml entry
    already names (same base URL and model, or same GGUF file) is dropped: the entry wins.
    """
    policy = policy or {}
    exclude = [str(p) for p in policy.get("exclude") or []]
    pin = policy.get("pin") or {}
    out = Discovery()
    taken = {c["base_url"].rstrip("/") + "|" + str(c.get("model") or "") for c in configured if c.get("base_url")}
    taken |= {str(Path(c["gguf_path"]).expanduser().resolve()) for c in configured if c.get("gguf_path")}
    for row in rows:
        if any(_matches(row, p) for p in exclude):
            out.notes.append(f"excluded {row['id']} (models.yaml discovery.exclude)")
            continue
        if row.get("base_url"):
            dup = row["base_url"].rstrip("/") + "|" + str(row.get("model") or "") in taken
        else:
            dup = str(Path(row.get("gguf_path") or "").resolve()) in taken
        if dup:
            continue
        for pattern, overrides in pin.items():
            if _matches(row, str(pattern)) and isinstance(overrides, dict):
                row = {**row, **overrides}
                break
        out.specs.append(row)
    return out


def discover(urls: list[str] | None = None, dirs: list[Path] | None = None) -> Discovery:
    """Probe the servers and scan the GGUF folders (concurrently: the scan overlaps the probes)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        servers = pool.submit(probe_servers, urls)
        files = pool.submit(find_gguf_files, dirs)
        a, b = servers.result(), files.result()
    return Discovery(a.specs + b.specs, a.notes + b.notes)


def join_taxonomy(taxonomy, roster) -> None:
    """Make each discovered model a candidate of every task class (after the class's own candidates), so the
    cascade may plan with it at cold start, when the taxonomy decides the route."""
    found = [i for i in roster.ids() if roster[i].source.startswith("discovered:") and roster[i].answers]
    for c in taxonomy.classes.values():
        c.candidates.extend(m for m in found if m not in c.candidates)
