"""How the topic files of the synthetic tables (synth_topics_a.py, synth_topics_b.py) register a topic in `T`."""

from __future__ import annotations

import string
from typing import Callable

from synth_text import COMMON, T


def lines(block: str) -> list[str]:
    """The non-blank lines of a text block, stripped of their indent: one entry a line."""
    return [s.strip() for s in block.strip().splitlines() if s.strip()]


def topic(
    name: str,
    templates: list[tuple[str, float]],
    vocab: dict[str, list[str] | Callable],
    context: str,
    easy: list[str],
    hard: list[str],
) -> None:
    """Register topic ``name`` in ``T`` (the entry synth_tables.make_prompt reads).

    ``templates``: (text with ``{slot}``s, difficulty); ``vocab``: slot -> list of values or a callable of a
    ``random.Random``, on top of ``synth_text.COMMON``; ``context``: the sentences a long prompt draws from,
    one a line; ``easy`` / ``hard``: the suffixes that lower / raise the difficulty.
    """
    if name in T:
        raise ValueError(f"topic {name!r} registered twice")
    for text, _ in templates:
        for _, slot, _, _ in string.Formatter().parse(text):
            if slot and slot not in vocab and slot not in COMMON:
                raise KeyError(f"topic {name!r}: no vocabulary for slot {slot!r} in {text!r}")
    T[name] = dict(templates=templates, vocab=vocab, context=lines(context), easy=easy, hard=hard)
