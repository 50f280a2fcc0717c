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


__all__ = ["hookimpl", "run", "__version__"]
