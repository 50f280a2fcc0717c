"""``python -m star_kit_tasks`` prints the folder of the built-in tasks' lm-eval configs: the ``--include_path``
under which the stock ``lm_eval`` command finds ``star_kit_<task>_standalone`` (:mod:`star_kit.lm_eval_hooks`)."""

from star_kit_tasks import TASKS_DIR

print(TASKS_DIR)
