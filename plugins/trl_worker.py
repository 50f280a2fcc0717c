"""The training worker that ``accelerate launch -m star_kit_plugins.trl_worker SPEC`` runs on every rank
(see :mod:`star_kit_plugins.trl_trainer`, ``launcher=accelerate``)."""

import sys

from star_kit_plugins.trl_trainer import run_worker

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: accelerate launch -m star_kit_plugins.trl_worker SPEC.json")
    run_worker(sys.argv[1])
