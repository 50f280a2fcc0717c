"""The plugin manager: loads the ``star_kit`` entry-point group and collects what each plugin registers.

Environment variables:
  STAR_KIT_LOAD_PLUGINS  comma-separated distribution or entry-point names: of the third-party plugins, only
                         these load (star-kit's own always do). Unset: everything installed loads.
  STAR_KIT_PLUGINS       comma-separated ``module`` or ``module:object`` specs loaded without installing them.
"""

from __future__ import annotations

import enum
import functools
import importlib
import importlib.metadata as md
import inspect
import math
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Callable, Iterable, Iterator

import pluggy

from . import hookspecs
from .config import RESERVED_OPTIONS
from .errors import PluginError, StarKitError, UnknownNameError, did_you_mean, one_line, warn_once
from .errors import shown_value as _shown

BUILTIN_DISTRIBUTION = "star-kit"
#: star-kit's own settings a task factory may declare (``data_dir``, ``skip_bad_rows``): offered, not options
CORE_OPTIONS = tuple(RESERVED_OPTIONS)

#: the kinds of plugin that take options (``--task-opt``, ``--sampler-opt``, ``--trainer-opt``)
OPTION_KINDS = ("tasks", "samplers", "trainers")

GROUP = "star_kit"
KINDS = {
    "tasks": "register_tasks",
    "extractors": "register_extractors",
    "samplers": "register_samplers",
    "trainers": "register_trainers",
    "verifiers": "register_verifiers",
}
EVENTS = ("star_kit_iteration_start", "star_kit_iteration_end")
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
        self._warned: set[tuple[str, str]] = set()  # (kind, name): a misbehaving extractor/verifier, said once
        self.samples_discarded = False  # bench without --out: the samples' folder is gone when a warning is read

    # -- loading -----------------------------------------------------------------------------------------
    def add_plugin(self, plugin: object, name: str, distribution: str) -> None:
        """Register a plugin module under ``name`` (its entry point's name). Entry-point names are a packaging
        detail that two unrelated distributions may share (``plugin``): the later one is registered as
        ``DISTRIBUTION:NAME`` instead of being skipped; only the names a plugin *registers* (tasks, samplers ...)
        can clash (:meth:`collect`)."""
        if self.pm.has_plugin(name) and self._dist.get(name) != distribution and \
                not self.pm.has_plugin(f"{distribution}:{name}"):
            name = f"{distribution}:{name}"
        if self.pm.has_plugin(name):
            self.problems.append(
                f"plugin {name!r} from distribution {distribution!r} skipped: a plugin of that name "
                f"is already loaded from {self._dist.get(name)!r}"
            )
            return
        if self.pm.is_registered(plugin):  # e.g. --plugin naming a module its entry point already loaded
            loaded = self.pm.get_name(plugin)
            self.problems.append(
                f"plugin {name!r} from {distribution!r} skipped: already loaded as plugin {loaded!r} "
                f"(distribution {self._dist.get(loaded)!r})"
            )
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy validation errors (bad hook signatures): its lines, as one
            self.problems.append(f"plugin {name!r} from distribution {distribution!r} is invalid: "
                                 f"{self._bad_arguments(plugin) or one_line(exc, whole=True, typed=False)}")
            return
        self._dist[name] = distribution
        self.problems.extend(self._unknown_hooks(plugin, name, distribution))

    def _bad_arguments(self, plugin: object) -> str | None:
        """Why pluggy refuses ``plugin``, where it is the usual reason (a hook function with an argument its
        hookspec does not pass, e.g. ``results`` for ``result``): said with the arguments it does pass."""
        for attr in dir(plugin):
            try:
                if self.pm.parse_hookimpl_opts(plugin, attr) is None:
                    continue
                spec = getattr(getattr(self.pm.hook, attr, None), "spec", None)
                params = inspect.signature(getattr(plugin, attr)).parameters.values()
            except Exception:  # an attribute that cannot be read or has no signature: pluggy's own words
                continue
            if spec is None:
                continue
            required = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                                                        p.POSITIONAL_OR_KEYWORD)]
            extra = [a for a in required if a not in spec.argnames]
            if extra:
                return (f"hook {attr}() takes {', '.join(map(repr, extra))}, which its hookspec does not pass"
                        f"{did_you_mean(extra[0], spec.argnames)}; it passes {', '.join(spec.argnames)} (a hook may "
                        f"take any of them, by name)")
        return None

    def _unknown_hooks(self, plugin: object, name: str, distribution: str) -> list[str]:
        """What pluggy's ``check_pending()`` finds (a ``@hookimpl`` that matches no hookspec, e.g. a misspelt
        ``register_task``), one line per hook, naming the plugin and the closest real hook; and a function named
        as a hook but not marked ``@star_kit.hookimpl`` (pluggy ignores it)."""
        known = [n for n in dir(self.pm.hook)
                 if not n.startswith("_") and getattr(getattr(self.pm.hook, n), "spec", None) is not None]
        out = []
        for attr in dir(plugin):
            try:
                opts = self.pm.parse_hookimpl_opts(plugin, attr)
            except Exception:
                continue
            if opts is None and attr in known and callable(getattr(plugin, attr, None)):
                out.append(f"plugin {name!r} (distribution {distribution!r}) defines {attr!r} without "
                           f"@star_kit.hookimpl; it is never called")
                continue
            if opts is None or opts.get("optionalhook") or attr in known:
                continue
            out.append(f"plugin {name!r} (distribution {distribution!r}) implements {attr!r}, which is not a "
                       f"star-kit hook{did_you_mean(attr, known)}; it is never called")
        return out

    def _register_callback(self, kind: str, plugin: str, dist: str, calls: list[str]) -> Callable[..., None]:
        """The ``register(name, obj)`` a ``register_*`` hook receives: exactly those two arguments (a third is a
        TypeError naming the signature, which the hook's caller reports naming the plugin)."""
        def register(name: str, obj: Any) -> None:
            calls.append(name)
            self._register(kind, name, obj, plugin, dist)

        register.__qualname__ = "register"  # as a TypeError names it
        return register

    def collect(self) -> None:
        """Call every plugin's ``register_*`` hooks, one plugin at a time, so errors name the plugin."""
        for kind, hook_name in KINDS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():  # registration order
                plugin = impl.plugin_name
                dist = self._dist.get(plugin, "?")

                calls: list[str] = []
                register = self._register_callback(kind, plugin, dist, calls)

                try:
                    returned = impl.function(register=register)
                    if returned is not None and not calls:  # e.g. {"name": Factory}: pluggy would drop it silently
                        self.problems.append(
                            f"plugin {plugin!r} (distribution {dist!r}): {hook_name} returned {_shown(returned)} "
                            f"({type(returned).__name__}), which is ignored; call register(name, factory) for "
                            f"each {SINGULAR[kind]} instead")
                except Exception as exc:
                    self.problems.append(
                        f"plugin {plugin!r} (distribution {dist!r}) raised in {hook_name}: "
                        f"{one_line(exc, whole=True)}"
                    )

    def _register(self, kind: str, name: str, obj: Any, plugin: str, dist: str) -> None:
        if not isinstance(name, str) or not name.strip():
            article = "an" if SINGULAR[kind][0] in "aeiou" else "a"
            self.problems.append(f"{article} {SINGULAR[kind]} from plugin {plugin!r} (distribution {dist!r}) ignored: "
                                 f"its name must be a non-empty string, got {_shown(name)} ({type(name).__name__})")
            return
        if not callable(obj):
            self.problems.append(f"{SINGULAR[kind]} {name!r} from plugin {plugin!r} (distribution {dist!r}) ignored: "
                                 f"register a class or a function, got {_shown(obj)} ({type(obj).__name__})")
            return
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

    #: what ``--sampler auto`` picks between: a run made with it may be resumed naming one of them
    AUTO_SAMPLERS = ("hf", "vllm")

    @classmethod
    def auto_named(cls, was: Any, now: Any) -> bool:
        """Whether a resume's ``--sampler now`` of a run made with ``--sampler was`` names what auto picks between:
        the sampler it used on another machine, whose options config.yaml holds, where auto would pick the other
        here (not a change of sampler the resume refuses)."""
        return was == "auto" and now in cls.AUTO_SAMPLERS

    def resolve_sampler(self, name: str) -> str:
        """The sampler a name stands for: ``auto`` is ``vllm`` on a CUDA machine where vLLM is installed (the
        fastest engine there), else ``hf`` (:attr:`AUTO_SAMPLERS`); any other name is itself."""
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

    def option_defaults(self, kind: str, name: str, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
        """The options the factory of ``name`` declares with a default, by keyword, as its signature writes them
        (a run's config.yaml records them beside the options given, so a later release's defaults cannot change
        what a resumed run does). Only values config.yaml gives back unchanged (:func:`_round_trips`) that fit the
        option's annotation, so that passing them back is the same call; never a command (``*_command``)."""
        from .config import is_command_key, option_type_problem

        entry = self.get(kind, name)
        params = _passed_on_parameters(entry.obj)
        hints = _chained_annotations(entry.obj)
        return {n: p.default for n, p in params.items()
                if n not in exclude and not is_command_key(n)  # a command is never taken from a run directory
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty
                and _round_trips(p.default)
                and (n not in hints or option_type_problem(n, p.default, hints[n]) is None)}

    def options(self, kind: str, name: str) -> dict[str, Any]:
        """What ``--KIND-opt`` takes for ``name``, from its factory's signature (and, for a class whose
        ``__init__`` passes ``**options`` on, its bases'): ``{"options": [{"name", "type", "default"}],
        "more": what it also takes through ``**options``, or None}``. Extractors and verifiers take none;
        a sampler's ``model`` and a task's ``data_dir``/``skip_bad_rows`` are star-kit's, not options."""
        entry = self.get(kind, name)
        if kind not in OPTION_KINDS:
            return {"options": [], "more": None}
        params, open_ = _chain(entry.obj)
        if not params:
            return {"options": [], "more": "any (its signature cannot be read)"}
        positional = 1 if kind == "samplers" else 0  # the model a sampler is built for
        rows, more = [], None
        for i, (n, p) in enumerate(params.items()):
            if p.kind is p.VAR_KEYWORD:
                more = n
                continue
            if i < positional or n in CORE_OPTIONS or p.kind is p.VAR_POSITIONAL:
                continue
            kind_of = p.annotation if isinstance(p.annotation, str) else \
                "" if p.annotation is p.empty else inspect.formatannotation(p.annotation)
            default = None if p.default is p.empty else p.default
            rows.append({"name": n, "type": kind_of, "default": list(default) if isinstance(default, tuple)
                         else default if _round_trips(default) else repr(default), "required": p.default is p.empty})
        if more is not None:  # (the **options of a subclass of a built-in: the built-in's, listed)
            more = (getattr(entry.obj, "passed_on_options", None) or f"more options through **{more}") if open_ \
                else None
        return {"options": rows, "more": more}

    def accepts(self, kind: str, name: str, option: str) -> bool:
        """Whether the factory of ``name`` declares ``option``: by name, its own or one a class passes on through
        ``**options`` to a base's ``__init__`` (:func:`_chain`), or through a ``**options`` that takes any."""
        params, open_ = _chain(self.get(kind, name).obj)
        if not params:  # no signature to read
            return False
        found = params.get(option)
        return open_ or found is not None and found.kind not in (found.VAR_KEYWORD, found.VAR_POSITIONAL)

    def check_options(self, kind: str, name: str, /, *args: Any, **options: Any) -> dict[str, Any]:
        """Check options against the factory's signature and its annotations, without calling it (so before a
        model is loaded): an unknown option or a value of the wrong type is one line naming the plugin. A factory
        may define ``check_options(registry, *args, **options)`` (given the options set), called last, raising on
        a bad value (``batch_size=-4``; a factory taking ``**options`` to pass on, the ray sampler's backend
        options, checks them there). Returns the options as the factory gets them (:func:`as_declared`)."""
        from .config import option_type_problem

        entry = self.get(kind, name)
        where = self.where(kind, name)
        try:
            signature = inspect.signature(entry.obj)
        except (TypeError, ValueError):  # no signature available (builtins): let the call decide
            return options
        params = signature.parameters
        # a subclass that passes **options on to a built-in's __init__ takes the built-in's options, and no other
        chained, open_ = _chain(entry.obj)
        if not open_:
            bound = [n for n, p in params.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:len(args)]
            known = [n for n, p in chained.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                     and n not in (*bound, *CORE_OPTIONS)]  # star-kit's own: offered, not options
            unknown = [k for k in options if k not in chained or chained[k].kind in (
                inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
            if unknown:
                raise PluginError(f"{where} has no option {unknown[0]!r}{did_you_mean(unknown[0], known)}"
                                  f"; its options: {', '.join(known) or 'none'}", 2)
        try:
            signature.bind(*args, **options)
        except TypeError as exc:
            raise PluginError(f"{where} rejected its options {sorted(options)}: {exc}", 2) from exc
        hints = _chained_annotations(entry.obj)
        declared = as_declared(options, hints)
        for key, value in declared.items():
            problem = option_type_problem(key, value, hints[key]) if key in hints else None
            if problem:
                raise PluginError(f"{where}: {problem}", 2)
        own_check, owner = _own_check(entry.obj)
        if own_check is not None:
            try:
                takes = inspect.signature(own_check).parameters
            except (TypeError, ValueError):
                takes = None
            # a check_options inherited from a base sees the options the base takes, not a subclass's own (which
            # may share a name: a subclass's 'device' of its own meaning)
            mine = set() if owner is entry.obj else _declared_below(entry.obj, owner)
            given = {k: v for k, v in declared.items() if k not in mine and (
                takes is None or k in takes or any(p.kind is p.VAR_KEYWORD for p in takes.values()))}
            try:
                with self.guard(kind, name):  # a plugin's bug in it is named, as in its factory
                    own_check(self, *args, **given)
            except StarKitError as exc:
                if owner is entry.obj or where in str(exc):
                    raise
                # a base's check: its words name the base ("sampler 'hf': ..."), the line names the plugin used too
                raise StarKitError(f"{where}: {exc}", exc.exit_code) from exc
        return declared

    def outcome(self, kind: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """The part of ``options`` that decides what the plugin computes: what a resumed run must keep. A factory
        may define ``outcome_options(registry, options) -> dict`` to leave out the options that only decide where
        or how fast the work runs (a batch size, a device, a process count; a trainer may replace the ones that
        make up its global batch by that batch), so that a run killed on one machine resumes on another with
        them changed; without it every option counts. An unknown name: ``options`` unchanged."""
        entry = self.items[kind].get(name)
        own = getattr(entry.obj, "outcome_options", None) if entry is not None else None
        if not callable(own):
            return dict(options)
        with self.guard(kind, name):
            result = own(self, dict(options))
        if not isinstance(result, dict):
            raise PluginError(f"{self.where(kind, name)}: outcome_options returned {type(result).__name__}, not a "
                              f"dict of options")
        return result

    def create(self, kind: str, name: str, /, *args: Any, _core: dict[str, Any] | None = None,
               **options: Any) -> Any:
        """Build a task, sampler or trainer through its factory; a failure names the plugin.

        ``_core`` holds star-kit's own settings (``data_dir``, ``skip_bad_rows``) offered to a task factory: each is
        passed only when it is set (not None or False) and the factory declares it; a user's option of that name
        is refused (``--task-opt data_dir=X`` would skip the checks of ``--data-dir``). The options are checked
        first (:meth:`check_options`), the factory gets them as declared (:func:`as_instances`: an Enum member, a
        Path), and the result is checked after (:meth:`check_created`: its protocol, and a task's lm-eval
        config)."""
        from .config import reserved_option_problem

        for key, value in (_core or {}).items():
            if key in options and (problem := reserved_option_problem(key)) is not None:
                raise PluginError(f"--{SINGULAR[kind]}-opt {key}: {problem}", 2)
            if value not in (None, False) and self.accepts(kind, name, key):
                options[key] = value
        options = self.check_options(kind, name, *args, **options)
        entry = self.get(kind, name)
        with self.guard(kind, name):
            obj = entry.obj(*args, **as_instances(options, _annotations(entry.obj)))
        self.check_created(kind, name, obj)
        return _CheckedSampler(self, kind, name, obj, options) if kind == "samplers" else obj

    def check_created(self, kind: str, name: str, obj: Any) -> None:
        """What a factory returned, against its protocol (:mod:`star_kit.protocols`): one line naming the plugin
        and what is missing; a task's lm-eval config too (:func:`star_kit.task.lm_eval_config_problems`)."""
        from . import protocols
        from .task import lm_eval_config_problems, yaml_overrides

        protocol = {"tasks": protocols.Task, "samplers": protocols.Sampler, "trainers": protocols.Trainer}.get(kind)
        if protocol is None:
            return
        missing = protocols.missing_members(obj, protocol)
        if missing:
            raise PluginError(f"{self.where(kind, name)} returned an object of type {type(obj).__name__} that lacks "
                              f"{', '.join(missing)} (see star_kit.protocols.{protocol.__name__})")
        if kind == "tasks":
            problems = lm_eval_config_problems(getattr(obj, "lm_eval_config", None))
            if not problems and getattr(obj, "extractor", None) not in self.items["extractors"]:
                named = getattr(obj, "extractor", None)
                known = self.names("extractors")
                problems = [f"its extractor {named!r} is not registered (available: {', '.join(known)})"
                            f"{did_you_mean(str(named), known)}"]
            if not problems:
                problems = yaml_overrides(obj) or _generation_mismatch(obj)
            if problems:
                source = getattr(obj, "lm_eval_yaml", None)
                raise PluginError(f"{self.where(kind, name)}: lm-eval config"
                                  f"{f' {source}' if source else ''}: {'; '.join(problems)}", 2)

    def guarded(self, kind: str, name: str, obj: Any) -> Any:
        """``obj`` with every method call under :meth:`guard`: an exception inside it names the plugin."""
        return _Guarded(self, kind, name, obj)

    @contextmanager
    def guard(self, kind: str, name: str) -> Iterator[None]:
        """Turn an exception raised inside a plugin's object into a PluginError naming the plugin."""
        try:
            yield
        except StarKitError:
            raise
        except Exception as exc:
            raise PluginError(f"{self.where(kind, name)} failed: {one_line(exc, whole=True)}"
                              f"{self.raised_at(kind, name, exc)}") from exc

    def raised_at(self, kind: str, name: str, exc: BaseException) -> str:
        """' (in SubtractTask.examples() at star_kit_subtract/plugin.py:57)': the deepest line of ``exc``'s
        traceback in the code of the plugin that registered ``name`` (the top-level package or module its object
        comes from, shown from there), or '' where the traceback never passes through it."""
        entry = self.items[kind].get(name)
        obj = entry.obj if entry is not None else None
        while isinstance(obj, functools.partial):
            obj = obj.func
        try:
            obj = inspect.unwrap(obj) if callable(obj) else obj
        except ValueError:  # a cycle of __wrapped__
            pass
        top = str(getattr(obj, "__module__", None) or type(obj).__module__).split(".")[0]
        if top in sys.stdlib_module_names or top == "builtins":
            return ""
        package = sys.modules.get(top)
        path = getattr(package, "__file__", None)
        # a package's folder(s) (a namespace package has several, and no __file__), or a module's file
        roots = [str(p) for p in getattr(package, "__path__", None) or []] or ([path] if path else [])
        found = root = None
        tb = exc.__traceback__
        while tb is not None:
            file = tb.tb_frame.f_code.co_filename
            for r in roots:
                if file == r or file.startswith(r + os.sep):
                    found, root = tb, r
            tb = tb.tb_next
        if found is None or root is None:
            return ""
        code = found.tb_frame.f_code
        shown = os.path.relpath(code.co_filename, os.path.dirname(root))
        return f" (in {getattr(code, 'co_qualname', code.co_name)}() at {shown}:{found.tb_lineno})"

    def provenance(self, kind: str, name: str) -> str:
        """'star-kit 0.1.0 (plugin 'hf')': the distribution (and its version) that provides ``name``, as eval.json
        records it; '(--plugin) (plugin 'mod')' for a module loaded with --plugin."""
        entry = self.items[kind].get(name)
        if entry is None:
            return "unregistered"
        try:
            version = f" {md.version(entry.distribution)}"
        except (md.PackageNotFoundError, ValueError):
            from . import __version__

            version = f" {__version__}" if entry.distribution == BUILTIN_DISTRIBUTION else ""
        return f"{entry.distribution}{version} (plugin {entry.plugin!r})"

    def declared_options(self, kind: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` as the factory of ``name`` gets them (:func:`as_declared`); unchanged for an unknown name."""
        entry = self.items[kind].get(name)
        return options if entry is None else as_declared(options, _annotations(entry.obj))

    def where(self, kind: str, name: str) -> str:
        """'sampler 'hf' (plugin 'hf', distribution 'star-kit')': how errors name a registered thing."""
        entry = self.items[kind].get(name)
        who = f"plugin {entry.plugin!r}, distribution {entry.distribution!r}" if entry else "unregistered"
        return f"{SINGULAR[kind]} {name!r} ({who})"

    def _warn_once(self, kind: str, name: str, what: str) -> None:
        """A plugin bug seen while grading (the run goes on): one warning per plugin, on stderr and in problems."""
        warning = f"{self.where(kind, name)} {what}"
        if warn_once((kind, name), warning, self._warned):
            self.problems.append(warning)

    def extractor(self, name: str) -> Callable[[str], str | None]:
        """The named answer extractor, wrapped so that it never raises (a raise, or a value that is not a string
        or None, counts as "no answer"; the first of each extractor is a warning on stderr naming the plugin)."""
        fn = self.get("extractors", name).obj

        def safe(text: str) -> str | None:
            text = text if isinstance(text, str) else ""
            try:
                answer = _watched(self, "extractors", name, fn, text)
            except Exception as exc:
                self._warn_once("extractors", name, f"raised {one_line(exc, whole=True)}"
                                                    f"{self.raised_at('extractors', name, exc)}; its outputs count "
                                                    f"as no answer")
                return None
            if answer is not None and not isinstance(answer, str):
                self._warn_once("extractors", name, f"returned {_shown(answer)} ({type(answer).__name__}), not a "
                                                    f"string or None; such outputs count as no answer")
                return None
            return answer if answer != "" else None

        safe.__name__ = f"extractor_{name}"
        return safe

    def note_no_answers(self, name: str, n: int, where: Any) -> None:
        """A warning (once per extractor) that it found no answer in any of ``n`` completions, recorded in
        ``where``: a bug in an extractor makes an accuracy of 0 that says nothing about the model."""
        see = "bench --out DIR keeps them to look at" if self.samples_discarded else f"see {where}"
        self._warn_once("extractors", name, f"found no answer in any of {n} completions ({see}): if they "
                                            f"hold answers, the extractor misses them and the accuracy of 0 says "
                                            f"nothing about the model")

    def verifier(self, name: str) -> Callable[[Any, str], str | None]:
        """The named rationale verifier, wrapped so that it never raises (a raise is a rejection, with the
        exception as its reason; the first of each verifier is also a warning on stderr naming the plugin) and
        always answers None or a non-empty reason."""
        fn = self.get("verifiers", name).obj

        def safe(example: Any, rationale: str) -> str | None:
            rationale = rationale if isinstance(rationale, str) else ""
            try:
                reason = _watched(self, "verifiers", name, fn, example, rationale)
            except Exception as exc:
                self._warn_once("verifiers", name, f"raised {one_line(exc, whole=True)}"
                                                   f"{self.raised_at('verifiers', name, exc)}; the rationales it "
                                                   f"raises on count as rejected")
                return f"verifier {name!r} raised {one_line(exc, whole=True)}"
            if reason is None:
                return None
            if not isinstance(reason, str):  # e.g. True for "fine": the protocol's None is acceptance
                self._warn_once("verifiers", name, f"returned {_shown(reason)} ({type(reason).__name__}), not None "
                                                   f"(accepted) or a string (the reason to reject); such results "
                                                   f"count as rejected")
                return f"verifier {name!r} returned {_shown(reason)} ({type(reason).__name__}), not None or a reason"
            elif reason == "":
                self._warn_once("verifiers", name, "returned '' (an empty reason), not None (accepted) or a "
                                                   "reason to reject; such results count as rejected")
            return str(reason) or "rejected"

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
                    f"raised in {hook_name}: {one_line(exc, whole=True)}"
                )
                print(f"warning: {warnings[-1]}", file=sys.stderr)
        return warnings

    def events(self) -> list[dict[str, Any]]:
        """The plugins that implement event hooks (loggers ...): plugin, distribution, the hooks."""
        hooks: dict[str, list[str]] = {}
        for hook_name in EVENTS:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                hooks.setdefault(impl.plugin_name, []).append(hook_name)
        return [{"name": plugin, "plugin": plugin, "distribution": self._dist.get(plugin, "?"), "hooks": names}
                for plugin, names in sorted(hooks.items())]

    def as_json(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {
            kind: [
                {"name": r.name, "plugin": r.plugin, "distribution": r.distribution}
                for r in sorted(entries.values(), key=lambda r: r.name)
            ]
            for kind, entries in self.items.items()
        }
        out["events"] = self.events()
        return out


#: an extractor or verifier call running this long on one text is said (a regular expression that backtracks
#: hangs a run in one call, where nothing else would say why); the watch looks every WATCH_POLL_S seconds
WATCH_AFTER_S = 10.0
WATCH_POLL_S = 1.0
_BUSY: list[Any] = [None]  # (registry, kind, name, characters, started) of the call running now, else None
_WATCH: list[threading.Thread | None] = [None]


def _watched(registry: "Registry", kind: str, name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` (the text last), watched by one daemon thread (started on first use) that warns once per
    plugin when the call runs past :data:`WATCH_AFTER_S`; the call itself is not stopped."""
    if _WATCH[0] is None:
        _WATCH[0] = threading.Thread(target=_watch, name="star-kit-watch", daemon=True)
        _WATCH[0].start()
    _BUSY[0] = (registry, kind, name, len(args[-1]), time.monotonic())
    try:
        return fn(*args)
    finally:
        _BUSY[0] = None


def _watch() -> None:
    while True:
        time.sleep(WATCH_POLL_S)
        busy = _BUSY[0]
        if busy is not None and time.monotonic() - busy[4] >= WATCH_AFTER_S:
            registry, kind, name, size, _ = busy
            warning = (f"{registry.where(kind, name)} has run for {WATCH_AFTER_S:g}s on one text of {size} characters "
                       f"(a regular expression that backtracks?); the run waits for it. benchmarks/redos.py --plugin "
                       f"MODULE times extractors and verifiers on hostile text")
            if warn_once((kind, name, "slow"), warning, registry._warned):
                registry.problems.append(warning)


#: what a plugin's methods must return (the test and its name), checked as they return: a prompt of 42 would reach
#: the sampler, which would be blamed; a hint of None would leave the rationalization prompts without their hint
_RETURNS = {"tasks": {**{name: (lambda r: isinstance(r, str), "a string")
                         for name in ("prompt", "hint", "target", "rationale_of")},
                      # None, a forgotten return, would grade every answer wrong (any truth value passes: numpy's)
                      "is_correct": (lambda r: r is not None, "True or False")}}


class _Guarded:
    """A proxy that runs every method of a plugin's object under :meth:`Registry.guard` (attributes pass)."""

    def __init__(self, registry: Registry, kind: str, name: str, obj: Any) -> None:
        object.__setattr__(self, "_guard", (registry, kind, name))
        object.__setattr__(self, "wrapped", obj)

    def __getattr__(self, attr: str) -> Any:
        if attr in ("wrapped", "_guard"):  # not set yet (copy, pickle): no recursion through __getattr__
            raise AttributeError(attr)
        value = getattr(self.wrapped, attr)
        if not inspect.isroutine(value) or attr.startswith("__"):  # a tokenizer or a module passes as it is
            return value
        registry, kind, name = self._guard

        def call(*args: Any, **kwargs: Any) -> Any:
            with registry.guard(kind, name):
                result = value(*args, **kwargs)
            expected = _RETURNS.get(kind, {}).get(attr)
            if expected is not None and not expected[0](result):
                raise PluginError(f"{registry.where(kind, name)}: {attr}() returned {_shown(result)} "
                                  f"({type(result).__name__}), not {expected[1]} (see star_kit.protocols.Task)")
            return result

        return call

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self.wrapped, attr, value)


def _generation_mismatch(task: Any) -> list[str]:
    """Where a task samples with other stop strings or another token budget than its lm-eval config gives the
    evaluation's requests (:func:`star_kit.task.generation_settings`): STaR would keep rationales cut otherwise
    than the ones it scores."""
    from .task import generation_settings

    try:
        until, budget = generation_settings(task.lm_eval_config)
    except ValueError as exc:
        return [str(exc)]
    problems = []
    if tuple(task.stop) != until:
        problems.append(f"its stop {tuple(task.stop)!r} is not generation_kwargs.until {until!r}: sampling and "
                        f"evaluation would stop differently (set both)")
    if task.max_new_tokens != budget:
        problems.append(f"its max_new_tokens {task.max_new_tokens!r} is not generation_kwargs.max_gen_toks {budget}: "
                        f"sampling and evaluation would have different budgets (set lm_eval_config"
                        f"['generation_kwargs']['max_gen_toks'] too)")
    return problems


def as_declared(options: dict[str, Any], hints: dict[str, Any]) -> dict[str, Any]:
    """``options`` as their annotations declare them, in values config.yaml can hold (the run records these):

    * an integer for an option declared as a string (not a number) is passed as its text: ``--task-opt digits=3``
      reads 3 as a number, as every option value is read, and ``digits: str`` gets "3" (an integer's text is what
      was typed: ``0123`` is read as text). A decimal number is not turned back into text (``1.10`` would become
      "1.1"): it stays refused for a string option;
    * ``null`` or ``none`` (any case) for an option that may be None and takes no string is None
      (``--task-opt limit=none`` for ``limit: int | None``).

    What the factory itself gets goes one step further (:func:`as_instances`)."""
    from .config import option_type_problem

    out = dict(options)
    for key, value in options.items():
        hint = hints.get(key)
        if hint is None or option_type_problem(key, value, hint) is None:
            continue
        if type(value) is int and option_type_problem(key, str(value), hint) is None:
            out[key] = str(value)
        elif isinstance(value, str) and value.lower() in ("null", "none") and option_type_problem(key, None, hint) \
                is None:
            out[key] = None
    return out


def as_instances(options: dict[str, Any], hints: dict[str, Any]) -> dict[str, Any]:
    """Declared options (:func:`as_declared`) as the factory is called with them: an Enum member's value is the
    member (``mode=fast`` for ``mode: Mode``), a text for a ``Path`` is a Path. Only the call sees these;
    config.yaml, eval.json and the errors keep the value as given."""
    return {key: _declared_instance(value, hints[key]) if key in hints else value for key, value in options.items()}


def _declared_instance(value: Any, hint: Any) -> Any:
    """``value`` as the Enum member or Path its annotation names (alone or in a union), else unchanged."""
    from .typecheck import union_members

    for option in union_members(hint):
        if isinstance(option, type) and issubclass(option, enum.Enum) and not isinstance(value, option):
            for member in option:
                if type(member.value) is type(value) and member.value == value:
                    return member
        elif isinstance(option, type) and issubclass(option, PurePath) and isinstance(value, str):
            return option(value)
    return value


class _CheckedSampler(_Guarded):
    """A sampler whose ``generate`` result is checked against the protocol before anything grades it: one list
    per prompt, in order, of ``params.n`` strings, each cut before the first stop string (cut here again, so a
    sampler that leaves the stop string in changes nothing). A wrong shape is one line naming the plugin, never a
    number computed from misaligned answers. Every method runs under :meth:`Registry.guard`. ``created_options``:
    the options it was created with (credentials redacted), which eval.json records beside its number."""

    def __init__(self, registry: Registry, kind: str, name: str, obj: Any, options: dict[str, Any]) -> None:
        from .config import redact

        super().__init__(registry, kind, name, obj)
        object.__setattr__(self, "created_options", redact(dict(options)))

    def generate(self, prompts, params, *args, **kwargs):
        registry, kind, name = self._guard
        with registry.guard(kind, name):
            result = self.wrapped.generate(prompts, params, *args, **kwargs)
        return checked_completions(registry.where(kind, name), len(prompts), params, result)


def checked_completions(where: str, n_prompts: int, params: Any, result: Any) -> list[list[str]]:
    """``result`` of a sampler's ``generate`` for ``n_prompts`` prompts, checked (see :class:`_CheckedSampler`)."""
    from .records import cut_at_stop

    n = params.n
    expected = f"expected a list of {n_prompts} lists (one per prompt, in order) of {n} string{'s' * (n != 1)}"
    if not isinstance(result, (list, tuple)) or len(result) != n_prompts:
        what = (f"a {type(result).__name__} of {len(result)} item{'s' * (len(result) != 1)}"
                if isinstance(result, (list, tuple, str, dict)) else _shown(result))
        raise PluginError(f"{where}: generate returned {what} for {n_prompts} prompts; {expected} (see "
                          f"star_kit.protocols.Sampler)")
    out = []
    for i, row in enumerate(result):
        if not isinstance(row, (list, tuple)) or len(row) != n or not all(isinstance(t, str) for t in row):
            if not isinstance(row, (list, tuple)):
                what = f"{_shown(row)} ({type(row).__name__})"
            elif len(row) != n:
                what = f"a list of {len(row)} completion{'s' * (len(row) != 1)}"
            else:
                bad = next(t for t in row if not isinstance(t, str))
                what = f"a list holding {_shown(bad)} ({type(bad).__name__})"
            raise PluginError(f"{where}: generate returned {what} for prompt {i}; {expected} (see "
                              f"star_kit.protocols.Sampler)")
        out.append([cut_at_stop(t, params.stop) for t in row])
    return out


def _round_trips(value: Any) -> bool:
    """Whether config.yaml writes ``value`` and reads back the same value of the same type: None, a bool, int,
    finite float, a string (one that reads as a number is written quoted), or a list of those; exact types (an
    Enum member is a str or int subclass that YAML cannot write)."""
    if type(value) is list:
        return all(type(v) is not list and _round_trips(v) for v in value)
    if value is None or type(value) in (bool, int, str):
        return True
    if type(value) is float:
        return math.isfinite(value)
    return False


def _passed_on_parameters(factory: Any) -> dict[str, inspect.Parameter]:
    """A factory's parameters, and for a class whose ``__init__`` takes ``**options`` those of the base classes'
    ``__init__`` it passes them on to, up the MRO while each takes ``**options`` too (a wrapper of ``trl-sft`` that
    adds one option records trl-sft's defaults: learning rate, batch, schedule). The factory's own win."""
    return _chain(factory)[0]


def _chain(factory: Any) -> tuple[dict[str, inspect.Parameter], bool]:
    """:func:`_passed_on_parameters`, and whether the chain ends open: whether the last ``__init__`` up it still
    takes any keyword (``**options``), so that no option name can be called unknown. A factory without a
    signature: ({}, True)."""
    params: dict[str, inspect.Parameter] = {}
    open_ = True
    for _, theirs, open_ in _levels(factory):
        for p in theirs:
            params.setdefault(p.name, p)
    return params, open_


def _levels(factory: Any) -> Iterator[tuple[Any, list[inspect.Parameter], bool]]:
    """The callables whose parameters a factory takes, in order, each with its parameters (without ``self``) and
    whether it takes ``**options``: the factory itself, then, for a class whose ``__init__`` takes ``**options``,
    each base's ``__init__`` it passes them on to, up the MRO while each takes ``**options`` too."""
    try:
        own = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return
    open_ = any(p.kind is p.VAR_KEYWORD for p in own)
    yield (factory.__init__ if inspect.isclass(factory) else factory), own, open_
    if not inspect.isclass(factory):
        return
    for base in factory.__mro__[1:]:
        if not open_ or base is object:
            break
        init = vars(base).get("__init__")
        if init is None:
            continue
        try:
            theirs = list(inspect.signature(init).parameters.values())[1:]  # without self
        except (TypeError, ValueError):
            break
        open_ = any(p.kind is p.VAR_KEYWORD for p in theirs)
        yield init, theirs, open_


def _chained_annotations(factory: Any) -> dict[str, Any]:
    """The annotations of a factory's parameters and of those it passes on (its bases' ``__init__``), each from
    the callable that declares it first (a subclass's own ``batch_size``, unannotated, is not held to a base's
    annotation of that name)."""
    hints: dict[str, Any] = {}
    seen: set[str] = set()
    for level, theirs, _ in _levels(factory):
        resolved = _annotations(level)
        for p in theirs:
            if p.name not in seen:
                seen.add(p.name)
                if p.name in resolved:
                    hints[p.name] = resolved[p.name]
    return hints


def _own_check(factory: Any) -> tuple[Callable[..., Any] | None, Any]:
    """A factory's ``check_options`` (a static or class method of a class, up its MRO, or an attribute of a
    function factory) and the class that defines it; (None, None) when it has none (an instance method of that
    name is not one: it would be called with the registry as ``self``)."""
    if not inspect.isclass(factory):
        check = getattr(factory, "check_options", None)
        return (check, factory) if callable(check) else (None, None)
    for cls in factory.__mro__:
        raw = vars(cls).get("check_options")
        if raw is not None:
            return (getattr(factory, "check_options"), cls) if isinstance(raw, (staticmethod, classmethod)) \
                else (None, None)
    return None, None


def _declared_below(factory: Any, owner: Any) -> set[str]:
    """The parameter names the classes of ``factory``'s MRO before ``owner`` declare in their own ``__init__``."""
    names: set[str] = set()
    for cls in factory.__mro__:
        if cls is owner:
            break
        init = vars(cls).get("__init__")
        if init is not None:
            try:
                names.update(p.name for p in list(inspect.signature(init).parameters.values())[1:]
                             if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
            except (TypeError, ValueError):
                pass
    return names


def _annotations(factory: Any) -> dict[str, Any]:
    """The parameter annotations of a factory (a class: its ``__init__``), resolved by ``inspect`` in the
    plugin's own module; when they cannot all be resolved, only the ones that are not strings are checked."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        params = inspect.signature(target, eval_str=True).parameters
    except Exception:  # an annotation that does not resolve (a name only imported for type checking)
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):
            return {}
    return {name: p.annotation for name, p in params.items()
            if p.annotation is not p.empty and not isinstance(p.annotation, str)
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _selected(filter_value: str | None) -> set[str] | None:
    if filter_value is None:
        return None
    return {part.strip() for part in filter_value.split(",") if part.strip()}


def _misspelt_groups(groups: Iterable[str]) -> list[str]:
    """Entry-point groups that are star-kit's written another way (``star-kit``, ``starkit``, ``StarKit``,
    ``star_kits``, ``star_kit.plugins``, ``star_kit_plugins``, and a few letter slips): a near name only, so that no
    other package's group is ever flagged."""
    near = {"starkit", "starkits", "starkitplugin", "starkitplugins", "startkit", "starkti", "sarkit"}
    return sorted(g for g in groups if g != GROUP and "".join(c for c in g.lower() if c.isalnum()) in near)


def _dist_name(ep: md.EntryPoint) -> str:
    return ep.dist.name if ep.dist else "?"


def load_registry(extra_plugins: Iterable[str] = ()) -> Registry:
    """Build a fresh registry from the installed entry points plus ``extra_plugins`` (``module[:object]``)."""
    registry = Registry()
    only = _selected(os.environ.get("STAR_KIT_LOAD_PLUGINS"))
    # star-kit's own plugins load first, so a third party can never silently take a built-in name.
    installed = md.entry_points()
    eps = sorted(installed.select(group=GROUP),
                 key=lambda e: (e.dist is None or e.dist.name != "star-kit", e.dist.name if e.dist else "", e.name))
    for group in _misspelt_groups(installed.groups):  # a typo in the group's name would hide a plugin silently
        names = sorted({f"{e.name} ({_dist_name(e)})" for e in installed.select(group=group)})
        registry.problems.append(
            f"entry point{'s' if len(names) > 1 else ''} {', '.join(names)} in group {group!r}, which star-kit does "
            f"not read: plugins go in group {GROUP!r} ([project.entry-points.{GROUP}] in pyproject.toml)")
    if only is not None:  # a name in the filter that nothing installed has (a typo) would hide its plugin silently
        third_party = {n for e in eps if _dist_name(e) != BUILTIN_DISTRIBUTION for n in (e.name, _dist_name(e))}
        for name in sorted(only - third_party):
            registry.problems.append(
                f"STAR_KIT_LOAD_PLUGINS names {name!r}, which no installed plugin distribution or entry point has "
                f"(installed: {', '.join(sorted(third_party)) or 'none besides star-kit'})")
    for ep in eps:
        dist = _dist_name(ep)
        if only is not None and dist != BUILTIN_DISTRIBUTION and dist not in only and ep.name not in only:
            continue  # the filter selects third-party plugins; star-kit's own always load
        try:
            plugin = ep.load()
        except Exception as exc:
            registry.problems.append(
                f"plugin {ep.name!r} from distribution {dist!r} failed to import ({ep.value}): "
                f"{one_line(exc, whole=True)}"
            )
            continue
        registry.add_plugin(plugin, ep.name, dist)
    env_specs = [s.strip() for s in os.environ.get("STAR_KIT_PLUGINS", "").split(",") if s.strip()]
    for source, spec in [*(("STAR_KIT_PLUGINS", s) for s in env_specs), *(("--plugin", s) for s in extra_plugins)]:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            error = PluginError(f"{source} {spec!r} failed to import: {one_line(exc, whole=True)}")
            if isinstance(exc, ModuleNotFoundError) and exc.name and \
                    (module_name == exc.name or module_name.startswith(exc.name + ".")):
                error = PluginError(f"{error}{_module_hint(module_name, source)}", 2)  # no such module: bad input (a
                # module that raises stays exit code 1)
            raise error from exc
        if attr and not hasattr(module, attr):
            raise PluginError(f"{source} {spec!r}: module {module_name!r} has no attribute {attr!r}", 2)
        plugin = getattr(module, attr) if attr else module
        registry.add_plugin(plugin, spec, "(--plugin)")
    registry.collect()
    return registry


def _module_hint(module_name: str, source: str) -> str:
    """Why a --plugin module was not found, where it can be told: a file path given for a module name, or a module
    in a folder that is not on Python's path."""
    path = Path(module_name)
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        return (f" ({source} takes a module name, not a file: e.g. PYTHONPATH={path.parent} star-kit ... "
                f"--plugin {path.stem})")
    where = Path.cwd() / Path(*module_name.split("."))
    if where.with_suffix(".py").is_file() or (where / "__init__.py").is_file():
        return (f" (it is in the current folder, which is not on Python's path: PYTHONPATH=. star-kit ... "
                f"--plugin {module_name})")
    return ""


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry of installed plugins (built on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_registry()
    return _DEFAULT
