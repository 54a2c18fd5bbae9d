"""fusiongraph: use many LLMs as one - decompose, route, judged cascade, record, synthesise."""

__version__ = "0.1.0"
