"""The shipped configuration: the model roster, the task taxonomy and the acceptance labels."""

from pathlib import Path

DEFAULTS_DIR = Path(__file__).resolve().parent
DEFAULT_MODELS = DEFAULTS_DIR / "models.yaml"
DEFAULT_TAXONOMY = DEFAULTS_DIR / "taxonomy.yaml"
ACCEPTANCE_LABELS = DEFAULTS_DIR / "acceptance_labels.jsonl"
