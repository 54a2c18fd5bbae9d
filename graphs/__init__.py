"""LangGraph graphs: wiring only; the work is in nodes/."""
