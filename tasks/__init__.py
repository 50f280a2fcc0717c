"""lm-eval task YAMLs and few-shot exemplar files of the built-in tasks (shipped in the wheel)."""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
