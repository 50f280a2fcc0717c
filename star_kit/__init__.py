"""star-kit: the Self-Taught Reasoner (STaR) loop with pluggable tasks, samplers and trainers."""

import pluggy

__version__ = "0.1.0"

#: Decorate plugin functions with this marker: ``@star_kit.hookimpl``.
hookimpl = pluggy.HookimplMarker("star_kit")

__all__ = ["hookimpl", "__version__"]
