"""The plugin manager: loads the ``star_kit`` entry-point group and collects what each plugin registers.

Environment variables:
  STAR_KIT_LOAD_PLUGINS  comma-separated distribution or entry-point names; only these load (test isolation).
                         Unset: everything installed loads.
  STAR_KIT_PLUGINS       comma-separated ``module`` or ``module:object`` specs loaded without installing them.
"""

from __future__ import annotations

import importlib
import inspect
import importlib.metadata as md
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import pluggy

from . import hookspecs
from .errors import PluginError, StarKitError, UnknownNameError

GROUP = "star_kit"
KINDS = {
    "tasks": "register_tasks",
    "extractors": "register_extractors",
    "samplers": "register_samplers",
    "trainers": "register_trainers",
    "verifiers": "register_verifiers",
}
SINGULAR = {"tasks": "task", "extractors": "extractor", "samplers": "sampler", "trainers": "trainer",
            "verifiers": "verifier"}


@dataclass(frozen=True)
class Registered:
    """One registered thing: its name, the object, the plugin that registered it and that plugin's distribution."""

    name: str
    obj: Any
    plugin: str
    distribution: str


class Registry:
    """What the installed plugins provide, by kind and name, plus the problems met while loading them."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.items: dict[str, dict[str, Registered]] = {kind: {} for kind in KINDS}
        self.problems: list[str] = []
        self._dist: dict[str, str] = {}

    # -- loading -----------------------------------------------------------------------------------------
    def add_plugin(self, plugin: object, name: str, distribution: str) -> None:
        if self.pm.has_plugin(name):
            self.problems.append(
                f"plugin {name!r} from distribution {distribution!r} skipped: a plugin of that name "
                f"is already loaded from {self._dist.get(name)!r}"
            )
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy validation errors (unknown hook names, bad signatures)
            self.problems.append(f"plugin {name!r} from distribution {distribution!r} is invalid: {exc}")
            return
        self._dist[name] = distribution

    def collect(self) -> None:
        """Call every plugin's ``register_*`` hooks, one plugin at a time, so errors name the plugin."""
        for kind, hook_name in KINDS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():  # registration order
                plugin = impl.plugin_name
                dist = self._dist.get(plugin, "?")

                def register(name: str, obj: Any, _kind=kind, _plugin=plugin, _dist=dist) -> None:
                    self._register(_kind, name, obj, _plugin, _dist)

                try:
                    impl.function(register=register)
                except Exception as exc:
                    self.problems.append(
                        f"plugin {plugin!r} (distribution {dist!r}) raised in {hook_name}: "
                        f"{type(exc).__name__}: {exc}"
                    )

    def _register(self, kind: str, name: str, obj: Any, plugin: str, dist: str) -> None:
        taken = self.items[kind].get(name)
        if taken is not None:
            self.problems.append(
                f"{SINGULAR[kind]} {name!r} from plugin {plugin!r} (distribution {dist!r}) ignored: already "
                f"registered by plugin {taken.plugin!r} (distribution {taken.distribution!r})"
            )
            return
        self.items[kind][name] = Registered(name, obj, plugin, dist)

    # -- lookup ------------------------------------------------------------------------------------------
    def get(self, kind: str, name: str) -> Registered:
        try:
            return self.items[kind][name]
        except KeyError:
            raise UnknownNameError(SINGULAR[kind], name, list(self.items[kind])) from None

    def resolve_sampler(self, name: str) -> str:
        """The sampler a name stands for: ``auto`` is ``vllm`` on a CUDA machine where vLLM is installed (the
        fastest engine there), else ``hf``; any other name is itself."""
        if name != "auto":
            return name
        import importlib.util

        if "vllm" in self.items["samplers"] and importlib.util.find_spec("vllm") is not None:
            try:
                import torch

                if torch.cuda.is_available():
                    return "vllm"
            except ImportError:
                pass
        return "hf"

    def names(self, kind: str) -> list[str]:
        return sorted(self.items[kind])

    def create(self, kind: str, name: str, *args: Any, **options: Any) -> Any:
        """Build a task, sampler or trainer through its factory; a failure names the plugin."""
        entry = self.get(kind, name)
        where = self.where(kind, name)
        try:
            inspect.signature(entry.obj).bind(*args, **options)
        except TypeError as exc:
            raise PluginError(f"{where} rejected its options {sorted(options)}: {exc}") from exc
        except ValueError:  # no signature available (builtins): let the call decide
            pass
        try:
            return entry.obj(*args, **options)
        except StarKitError:
            raise
        except Exception as exc:
            raise PluginError(f"{where} failed: {type(exc).__name__}: {exc}") from exc

    @contextmanager
    def guard(self, kind: str, name: str) -> Iterator[None]:
        """Turn an exception raised inside a plugin's object into a PluginError naming the plugin."""
        try:
            yield
        except StarKitError:
            raise
        except Exception as exc:
            raise PluginError(f"{self.where(kind, name)} failed: {type(exc).__name__}: {exc}") from exc

    def where(self, kind: str, name: str) -> str:
        """'sampler 'hf' (plugin 'hf', distribution 'star-kit')': how errors name a registered thing."""
        entry = self.items[kind].get(name)
        who = f"plugin {entry.plugin!r}, distribution {entry.distribution!r}" if entry else "unregistered"
        return f"{SINGULAR[kind]} {name!r} ({who})"

    def extractor(self, name: str) -> Callable[[str], str | None]:
        """The named answer extractor, wrapped so that it never raises (a raise counts as "no answer")."""
        fn = self.get("extractors", name).obj

        def safe(text: str) -> str | None:
            try:
                answer = fn(text if isinstance(text, str) else "")
            except Exception:
                return None
            return answer if isinstance(answer, str) and answer != "" else None

        safe.__name__ = f"extractor_{name}"
        return safe

    def verifier(self, name: str) -> Callable[[Any, str], str | None]:
        """The named rationale verifier, wrapped so that it never raises (a raise is a rejection, with the
        exception as its reason) and always answers None or a non-empty reason."""
        fn = self.get("verifiers", name).obj

        def safe(example: Any, rationale: str) -> str | None:
            try:
                reason = fn(example, rationale if isinstance(rationale, str) else "")
            except Exception as exc:
                return f"verifier {name!r} raised {type(exc).__name__}: {exc}"
            return None if reason is None else (str(reason) or "rejected")

        safe.__name__ = f"verifier_{name}"
        return safe

    def emit(self, hook_name: str, **kwargs: Any) -> list[str]:
        """Call an event hook on every plugin. An event plugin (a logger) that raises does not stop the run:
        the returned warnings (also printed to stderr) name the plugin and its distribution."""
        warnings = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception as exc:
                warnings.append(
                    f"plugin {impl.plugin_name!r} (distribution {self._dist.get(impl.plugin_name, '?')!r}) "
                    f"raised in {hook_name}: {type(exc).__name__}: {exc}"
                )
                print(f"warning: {warnings[-1]}", file=sys.stderr)
        return warnings

    def as_json(self) -> dict[str, list[dict[str, str]]]:
        return {
            kind: [
                {"name": r.name, "plugin": r.plugin, "distribution": r.distribution}
                for r in sorted(entries.values(), key=lambda r: r.name)
            ]
            for kind, entries in self.items.items()
        }


def _selected(filter_value: str | None) -> set[str] | None:
    if filter_value is None:
        return None
    return {part.strip() for part in filter_value.split(",") if part.strip()}


def _load_spec(spec: str) -> object:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


def load_registry(extra_plugins: Iterable[str] = ()) -> Registry:
    """Build a fresh registry from the installed entry points plus ``extra_plugins`` (``module[:object]``)."""
    registry = Registry()
    only = _selected(os.environ.get("STAR_KIT_LOAD_PLUGINS"))
    # star-kit's own plugins load first, so a third party can never silently take a built-in name.
    eps = sorted(md.entry_points(group=GROUP),
                 key=lambda e: (e.dist is None or e.dist.name != "star-kit", e.dist.name if e.dist else "", e.name))
    for ep in eps:
        dist = ep.dist.name if ep.dist else "?"
        if only is not None and dist not in only and ep.name not in only:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            registry.problems.append(
                f"plugin {ep.name!r} from distribution {dist!r} failed to import ({ep.value}): "
                f"{type(exc).__name__}: {exc}"
            )
            continue
        registry.add_plugin(plugin, ep.name, dist)
    env_specs = [s.strip() for s in os.environ.get("STAR_KIT_PLUGINS", "").split(",") if s.strip()]
    for spec in [*env_specs, *extra_plugins]:
        try:
            plugin = _load_spec(spec)
        except Exception as exc:
            raise PluginError(f"--plugin {spec!r} failed to import: {type(exc).__name__}: {exc}") from exc
        registry.add_plugin(plugin, spec, "(--plugin)")
    registry.collect()
    return registry


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry of installed plugins (built on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_registry()
    return _DEFAULT
