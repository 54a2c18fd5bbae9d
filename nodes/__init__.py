"""The nodes of the fusion graph, one per file."""
