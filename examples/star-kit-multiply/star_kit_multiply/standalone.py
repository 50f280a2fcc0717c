"""The multiply task's answer extraction and grading for the stock ``lm_eval`` command
(``lm_eval_standalone.yaml`` references these two with lm-eval's ``!function``)."""

from star_kit.lm_eval_hooks import standalone

extract_multiply, is_correct_multiply = standalone("multiply")
