"""star-kit: the Self-Taught Reasoner (STaR) loop with pluggable tasks, samplers and trainers."""

import pluggy

__version__ = "0.1.0"

#: Decorate plugin functions with this marker: ``@star_kit.hookimpl``.
hookimpl = pluggy.HookimplMarker("star_kit")


def run(config=None, /, *, resume=None, progress=True, **options):
    """Run STaR from Python, as ``star-kit run`` does; returns one ``IterationResult`` per iteration. The
    arguments: :func:`star_kit.api.run`."""
    from .api import run as _run

    return _run(config, resume=resume, progress=progress, **options)


def bench(models=(), tasks=None, *, run=None, progress=True, **options):
    """Bench models on tasks from Python, as ``star-kit bench`` does; returns one result dict per (model, task).
    The arguments: :func:`star_kit.api.bench`."""
    from .api import bench as _bench

    return _bench(models, tasks, run=run, progress=progress, **options)


__all__ = ["bench", "hookimpl", "run", "__version__"]
