"""Prompt text of the synthetic tables (benchmarks/synth_tables.py): names, number slots and the topic registry `T`."""

from __future__ import annotations

# --------------------------------------------------------------------------------------------------
# prompt text
# --------------------------------------------------------------------------------------------------
NAMES = [
    "Alice",
    "Bob",
    "Carlos",
    "Dana",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jamal",
    "Kira",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quentin",
    "Rosa",
    "Sam",
    "Tariq",
    "Uma",
    "Victor",
    "Wen",
    "Yusuf",
    "Zoe",
]


def _num(lo, hi):
    return lambda r: str(r.randint(lo, hi))


def _price(lo, hi):
    return lambda r: f"{r.uniform(lo, hi):.2f}"


COMMON = {
    "name": NAMES,
    "name2": NAMES,
    "n1": _num(2, 40),
    "n2": _num(3, 90),
    "n3": _num(100, 999),
    "year": _num(1450, 1950),
}

# topic -> dict(templates=[(text, difficulty)], vocab={slot: list|callable}, context=[sentences],
#               easy=[suffix], hard=[suffix])
T: dict[str, dict] = {}
