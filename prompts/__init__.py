"""Prompts as files: each `<name>.md` is the system prompt of one model role, or, as `<name>_request.md` /
`<name>_part.md`, the template of a user message (``load_prompt(name).format(...)``, ``{field}`` placeholders)."""

from functools import lru_cache
from pathlib import Path

import yaml

PROMPT_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def load_prompt(name: str) -> str:
    path = PROMPT_DIR / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"prompt {path} does not exist")
    return path.read_text(encoding="utf-8").strip()


@lru_cache(maxsize=None)
def load_examples(name: str) -> list[dict]:
    """Worked examples of a role, `<name>_examples.yaml`: a list of mappings."""
    path = PROMPT_DIR / f"{name}_examples.yaml"
    return list(yaml.safe_load(path.read_text(encoding="utf-8")) or []) if path.is_file() else []
