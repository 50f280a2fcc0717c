"""The ``openai`` sampler: any OpenAI-compatible ``/v1/completions`` server (vLLM, SGLang, llama.cpp, TGI ...).

Standard library only (``urllib`` + threads). Prompts are sent several per request (the completions API takes a
list of prompts) and requests run concurrently; completions come back in prompt order, cut before the first stop
string (client-side too, so a server that keeps the stop string, or caps how many it accepts, changes nothing).

**Pairing with the local trainer.** A remote server cannot load weights that star-kit hands it, so ``load(model)``
(called by the STaR loop with each iteration's newest checkpoint folder) does two things:

1. it switches the model name sent in requests: ``served_model`` is a template, default ``{model}`` — the path
   itself, which is what ``vllm serve PATH`` serves under; a fixed name (``served_model=star``) stays fixed;
2. it makes the server serve it, in one of two ways, then polls ``GET {base_url}/models`` until the served name
   is listed (``reload_timeout`` seconds):

   - ``serve_command``: the server itself, e.g. ``vllm serve {model} --port 8000``. star-kit runs it (split like a
     shell line, ``{model}`` and ``{served_model}`` replaced in its words, no shell) and owns it: it is stopped
     (SIGTERM to its process group, so the engine's own processes too; SIGKILL after ``stop_timeout`` seconds)
     before the next checkpoint's server starts and when the sampler closes, and it gets SIGTERM if star-kit dies
     (Linux). If it exits before serving, the wait ends at once with its last lines of output; a request that fails
     after it died says so. Its output is kept in memory only (the last lines, credentials redacted): a server may
     print its arguments, keys included.
   - ``reload_command``: a shell command that returns, with ``{model}`` and ``{served_model}`` shell-quoted -- a
     script that restarts a server in the background (``nohup ... &``) or a ``curl`` to a hot-load endpoint. Its
     output goes to star-kit's terminal; a non-zero exit is one line; a background server is the script's to stop.

   The server must be able to read the checkpoint path (same machine or a shared file system).

Without either the server is expected to serve the model already (``GET /models`` is checked at construction and
at each new checkpoint unless ``check_models=false``), so a run with more than the baseline needs one; it can be
added on ``--resume``.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from urllib.parse import unquote
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Sequence

import star_kit
from star_kit.config import redact_text
from star_kit.errors import StarKitError
from star_kit.protocols import Advance, placement_options
from star_kit.records import GenerationParams, cut_at_stop

_PLACEHOLDER = re.compile(r"\{(model|served_model)\}")  # in reload_command and serve_command

RETRY_STATUS = {408, 429, 500, 502, 503, 504}
MODELS_TIMEOUT = 30.0  # seconds for GET /models: a listing, answered at once by a live server
OUTPUT_KEPT = 8192  # bytes of the serve_command server's latest output kept in memory, for its error messages


class OpenAISampler:
    """Options: ``base_url`` (default ``$OPENAI_BASE_URL`` or ``http://127.0.0.1:8000/v1``), ``api_key``
    (default ``$OPENAI_API_KEY``; none sent when unset), ``served_model`` (name sent as ``model``; ``{model}`` is
    replaced by the loaded model; default ``{model}``), ``batch_size`` (prompts per request, default 16),
    ``concurrency`` (requests in flight, default 8), ``timeout`` (seconds per request, default 300),
    ``max_retries`` (on connection errors, timeouts, 429 and 5xx, with exponential backoff from ``backoff``
    seconds, default 4 and 0.5), ``serve_command`` or ``reload_command`` (see the module docstring),
    ``reload_timeout`` (seconds to wait for the server to list a model, default 600), ``stop_timeout`` (seconds the
    server ``serve_command`` runs gets to exit on SIGTERM, default 30), ``check_models`` (check that
    ``GET /models`` lists the model at start and each new checkpoint after, default true)."""

    # how requests are sent, not what they ask: a resumed run may change them (the address and the restart
    # command are the user's environment, never compared)
    outcome_options = placement_options("batch_size", "concurrency", "timeout", "max_retries", "backoff",
                                        "reload_timeout", "stop_timeout", "check_models")

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        served_model: str = "{model}",
        batch_size: int = 16,
        concurrency: int = 8,
        timeout: float = 300.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        reload_command: str | None = None,
        serve_command: str | None = None,
        reload_timeout: float = 600.0,
        stop_timeout: float = 30.0,
        check_models: bool = True,
    ) -> None:
        for key, value in (("served_model", served_model), ("reload_command", reload_command),
                           ("serve_command", serve_command)):
            if value is not None and not isinstance(value, str):  # in a YAML config file {model} is a mapping
                raise StarKitError(f"sampler 'openai': {key} must be a string, got {value!r} (in a config file, "
                                   f"quote it: {key}: '...{{model}}...')", 2)
        url = (base_url or os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1").rstrip("/")
        if not url.lower().startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
            where = "base_url" if base_url else "$OPENAI_BASE_URL"
            raise StarKitError(f"sampler 'openai': {where} must be an http:// or https:// URL (a server's "
                               f"OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1), got {redact_text(url)!r}", 2)
        for key, value, least in (("batch_size", batch_size, 1), ("concurrency", concurrency, 1),
                                  ("max_retries", max_retries, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise StarKitError(f"sampler 'openai': {key} must be an integer >= {least}, got {value!r}", 2)
        # user:password@host: sent as HTTP Basic auth (urllib does not send a URL's userinfo), never shown
        scheme, sep, rest = url.partition("://")
        authority, slash, path = rest.partition("/")
        userinfo, at, host = authority.rpartition("@")
        self._basic = base64.b64encode(unquote(userinfo).encode()).decode() if at else None
        self.base_url = f"{scheme}{sep}{host}{slash}{path}" if at else url  # where requests go
        self.shown_url = redact_text(self.base_url)  # in messages: a credential in its query redacted too
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.served_template = str(served_model)
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.reload_command = reload_command or None
        self.serve_command = serve_command or None
        if self.reload_command and self.serve_command:
            raise StarKitError("sampler 'openai': serve_command and reload_command are two ways of serving each "
                               "checkpoint: give one (serve_command runs the server itself; reload_command a "
                               "script that restarts one and returns)", 2)
        if self.serve_command:
            try:
                # a backslash at a line's end joins lines, as a shell does ('--model {model} \\' pasted from a doc)
                self._serve_words = shlex.split(self.serve_command.replace("\\\n", " "))
            except ValueError as exc:
                raise StarKitError(f"sampler 'openai': serve_command is not a command line ({exc}): "
                                   f"{redact_text(self.serve_command)}", 2) from None
            if not self._serve_words:
                raise StarKitError("sampler 'openai': serve_command is empty", 2)
        self.reload_timeout = float(reload_timeout)
        self.stop_timeout = max(0.0, float(stop_timeout))
        self.check_models = bool(check_models)  # a bool: the registry checks it
        self.model = ""
        self.served_model = ""
        self._started = False
        self._server: _Server | None = None  # what serve_command runs
        self.load(model)
        self._started = True

    # -- transport ---------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict | None = None, retries: int | None = None,
                 timeout: float | None = None, say_retries: bool = False) -> dict:
        """One JSON request with retries (``timeout`` seconds each, default the ``timeout`` option;
        ``say_retries``: a line on stderr before each retry); a final failure is a StarKitError of one line."""
        url = f"{self.base_url}{path}"  # the request's own
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        elif self._basic:
            headers["Authorization"] = f"Basic {self._basic}"
        shown = f"{self.shown_url}{path}"
        retries = self.max_retries if retries is None else retries
        attempt = 0
        while True:
            delay = self.backoff * (2 ** attempt)
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method=method)
                with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                    raw = resp.read()
                try:
                    return json.loads(raw)
                except ValueError:
                    raise StarKitError(
                        f"sampler 'openai': {method} {shown}: HTTP {resp.status} but not JSON: {_excerpt(raw)}"
                    ) from None
            except urllib.error.HTTPError as exc:
                body_text = _excerpt(exc.read() if exc.fp else b"")
                why = f"HTTP {exc.code}: {body_text}"
                if exc.code not in RETRY_STATUS:
                    raise StarKitError(f"sampler 'openai': {method} {shown} failed: {why}") from None
                after = exc.headers.get("Retry-After") if exc.headers else None
                if after:
                    try:
                        delay = max(delay, min(float(after), 60.0))
                    except ValueError:
                        pass
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                why = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
            if attempt >= retries:
                raise StarKitError(
                    f"sampler 'openai': {method} {shown} failed after {attempt + 1} attempt(s): {why}"
                    + self._server_gone()
                )
            if say_retries:
                print(f"sampler 'openai': {method} {shown}: {why}; retrying in {delay:g}s (attempt {attempt + 2} of "
                      f"{retries + 1})", file=sys.stderr, flush=True)
            time.sleep(delay)
            attempt += 1

    def served_models(self, retries: int | None = None) -> list[str]:
        # a live server lists its models at once: a server that accepts and never answers is not waited on for
        # the generation timeout, and each retry is said (the start of a run would otherwise be silent)
        reply = self._request("GET", "/models", retries=retries, timeout=min(self.timeout, MODELS_TIMEOUT),
                              say_retries=retries is None)
        data = reply.get("data") if isinstance(reply, dict) else None
        return [m.get("id") for m in data or [] if isinstance(m, dict)]

    # -- the Sampler protocol ----------------------------------------------------------------------------
    def load(self, model: str) -> None:
        """Point requests at ``model``; with ``serve_command`` or ``reload_command``, (re)start the server on it
        and wait until it lists it."""
        if os.path.exists(model):  # a checkpoint under a relative --out: the server may run from elsewhere
            model = os.path.abspath(model)
        served = self.served_template.replace("{model}", model)
        if self._started and model == self.model:
            return
        values = {"model": model, "served_model": served}  # one pass: a substituted text is never read again
        if self.serve_command:
            self._serve(served, [_PLACEHOLDER.sub(lambda m: values[m[1]], w) for w in self._serve_words])
        elif self.reload_command and not self._started and self._lists(served):
            pass  # the server already serves the starting model: no restart
        elif self.reload_command:
            cmd = _PLACEHOLDER.sub(lambda m: shlex.quote(values[m[1]]), self.reload_command)
            print(f"sampler 'openai': reload_command for {model}; waiting up to {self.reload_timeout:g}s for "
                  f"{self.shown_url} to serve it", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            try:
                done = subprocess.run(cmd, shell=True, stdin=subprocess.DEVNULL, timeout=self.reload_timeout)
            except subprocess.TimeoutExpired:
                raise StarKitError(f"sampler 'openai': reload_command ran over {self.reload_timeout:g}s: "
                                   f"{redact_text(cmd)}")
            if done.returncode != 0:
                raise StarKitError(f"sampler 'openai': reload_command exited with {done.returncode}: "
                                   f"{redact_text(cmd)}")
            self._wait_for(served, self.reload_timeout)
            print(f"sampler 'openai': {self.shown_url} serves {served} after {time.monotonic() - t0:.0f}s",
                  file=sys.stderr, flush=True)
        elif self.check_models and self._started and served == self.served_model:
            raise StarKitError(
                f"sampler 'openai': served_model {served!r} stays the same for the new checkpoint {model!r} and "
                f"there is no serve_command or reload_command: nothing makes {self.shown_url} serve it "
                f"({self._go_on}; "
                "check_models=false if the server reloads it by other means)")
        elif self.check_models:
            listed = self.served_models()
            if served not in listed:
                raise StarKitError(
                    f"sampler 'openai': {self.shown_url} serves {listed}, not "
                    + (f"the new checkpoint {served!r}: a run past its baseline needs serve_command or "
                       f"reload_command to serve each checkpoint ({self._go_on})" if self._started else
                       f"{served!r} (set served_model, or serve_command to start the server on it)"))
        self.model, self.served_model = model, served

    @property
    def _go_on(self) -> str:
        return (f"what is done is kept: --resume DIR --sampler-opt base_url={self.shown_url} "
                "--sampler-opt serve_command=... goes on from here")

    def _lists(self, served: str) -> bool:
        try:
            return served in self.served_models(retries=0)
        except StarKitError:
            return False

    def _wait_for(self, served: str, timeout: float, server: _Server | None = None) -> None:
        """Poll ``GET /models`` until it lists ``served``; ``timeout`` seconds, or the exit of the ``server``
        star-kit runs, end the wait with one line."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            code = server.poll() if server is not None else None
            if code is not None:
                raise StarKitError(f"sampler 'openai': serve_command exited with {code} before {self.shown_url} "
                                   f"listed {served!r}{server.said()}")
            try:
                listed = self.served_models(retries=0)
                if served in listed:
                    return
                last = f"serves {listed}"
            except StarKitError as exc:
                last = str(exc)
            left = deadline - time.monotonic()
            if left <= 0:
                stopped = f"; serve_command stopped{server.said()}" if server is not None else ""
                raise StarKitError(f"sampler 'openai': {self.shown_url} did not list {served!r} within "
                                   f"{timeout:g}s ({last}){stopped}")
            if server is not None:
                server.wait(min(1.0, left))  # returns at once when it exits
            else:
                time.sleep(min(1.0, left))

    def _serve(self, served: str, argv: list[str]) -> None:
        """Stop the server serve_command runs, start it on the new model, wait until ``served`` is listed: its
        exit or ``reload_timeout`` seconds end the wait with one line (and the new server stopped)."""
        self._stop_server()
        if self._address_taken():  # a server star-kit does not run would answer in place of the one it starts
            try:
                what = f"serves {self.served_models(retries=0)}"
            except StarKitError as exc:
                what = str(exc).removeprefix("sampler 'openai': ")
            raise StarKitError(f"sampler 'openai': serve_command: {self.shown_url} already answers ({what}), from a "
                               "server star-kit does not run: stop it, or leave serve_command out to use that "
                               "server as it is")
        print(f"sampler 'openai': serve_command for {served}; waiting up to {self.reload_timeout:g}s for "
              f"{self.shown_url} to serve it", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        self._server = _Server(argv)  # from here close(), atexit and the next load stop it, even mid-wait
        try:
            self._wait_for(served, self.reload_timeout, self._server)
        except BaseException:  # an error, Ctrl-C or SIGTERM: a server half started is not left behind
            self._stop_server()
            raise
        atexit.register(self._stop_server)  # the loop closes its sampler; this is for a caller that does not
        print(f"sampler 'openai': {self.shown_url} serves {served} after {time.monotonic() - t0:.0f}s (stopped "
              "at the next checkpoint and at the end)", file=sys.stderr, flush=True)

    def _address_taken(self) -> bool:
        """Whether something accepts connections at base_url's host and port."""
        parts = urllib.parse.urlsplit(self.base_url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=2):
                return True
        except (OSError, ValueError):
            return False

    def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            atexit.unregister(self._stop_server)
            server.stop(self.stop_timeout)

    def _server_gone(self) -> str:
        """', and the server serve_command runs exited with N (its last lines)' once it has; else ''."""
        server = self._server
        code = server.poll() if server is not None else None
        return "" if code is None else f", and the server serve_command runs exited with {code}{server.said()}"

    def close(self) -> None:
        """Stop the server ``serve_command`` runs (a server a ``reload_command`` started is the command's)."""
        self._stop_server()

    def generate(
        self, prompts: Sequence[str], params: GenerationParams, advance: Advance | None = None
    ) -> list[list[str]]:
        if not prompts:
            return []
        chunks = [list(range(i, min(i + self.batch_size, len(prompts)))) for i in range(0, len(prompts),
                                                                                      self.batch_size)]
        out: list[list[str] | None] = [None] * len(prompts)
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(chunks)))
        try:
            futures = {pool.submit(self._complete, [prompts[i] for i in idx], params, params.seed + k): idx
                       for k, idx in enumerate(chunks)}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in finished:
                    if fut.exception() is not None:
                        raise fut.exception()
                    idx = futures[fut]
                    for i, texts in zip(idx, fut.result()):
                        out[i] = texts
                    if advance is not None:
                        advance(len(idx))
        except BaseException:  # an error, Ctrl-C or SIGTERM: the queued requests are never sent
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return out  # type: ignore[return-value]

    def _complete(self, prompts: list[str], params: GenerationParams, seed: int) -> list[list[str]]:
        body = {
            "model": self.served_model,
            "prompt": prompts,
            "n": params.n,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p if params.temperature > 0 else 1.0,
            "seed": seed,
        }
        stop = [s for s in params.stop if s]
        if stop:
            body["stop"] = stop
        reply = self._request("POST", "/completions", body)
        choices = reply.get("choices") if isinstance(reply, dict) else None
        want = len(prompts) * params.n
        if not isinstance(choices, list) or len(choices) != want:
            got = len(choices) if isinstance(choices, list) else "no"
            raise StarKitError(f"sampler 'openai': POST {self.shown_url}/completions returned {got} choices, "
                               f"expected {want}: {_excerpt(json.dumps(reply).encode())}")
        # Choice i*n + j is completion j of prompt i (the API's index); sort, since order is not promised.
        choices = sorted(choices, key=lambda c: c.get("index", 0))
        texts = [cut_at_stop(str(c.get("text") or ""), params.stop) for c in choices]
        return [texts[k * params.n : (k + 1) * params.n] for k in range(len(prompts))]


class _Server:
    """The process ``serve_command`` runs (no shell), in its own session and process group, with SIGTERM when
    star-kit dies (Linux); its output read into memory (the last ``OUTPUT_KEPT`` bytes; nothing on disk)."""

    def __init__(self, argv: list[str]) -> None:
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_death_signal())
        except (OSError, subprocess.SubprocessError) as exc:  # no such program, not executable
            raise StarKitError(f"sampler 'openai': serve_command cannot start {argv[0]!r}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
        self._out = (b"", False)  # the last bytes, and whether its first line is only the end of a line
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        pipe = self.proc.stdout
        while chunk := pipe.read1(65536):
            kept, cut = self._out
            out = kept + chunk
            self._out = (out[-OUTPUT_KEPT:], True) if len(out) > OUTPUT_KEPT else (out, cut)  # one assignment
        pipe.close()

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, seconds: float) -> None:
        try:
            self.proc.wait(timeout=max(0.0, seconds))
        except subprocess.TimeoutExpired:
            pass

    def said(self) -> str:
        """' (its last lines: "..." / "...")' from what the server printed, each line redacted whole, then cut to
        its last 300 characters; '' when it printed nothing."""
        if self.proc.poll() is not None:
            self._reader.join(timeout=1.0)  # its last output is read before it is shown
        kept, cut = self._out
        lines = kept.decode("utf-8", "replace").splitlines()
        if cut and lines:
            lines = lines[1:]  # the start of that line is gone: what it said cannot be redacted whole
        lines = [redact_text(" ".join(ln.split()))[-300:] for ln in lines if ln.strip()][-2:]
        return f" (its last lines: {' / '.join(repr(ln) for ln in lines)})" if lines else ""

    def stop(self, grace: float) -> None:
        """SIGTERM to the server's process group (its engine's processes included), SIGKILL after ``grace``
        seconds, or at once when this is interrupted (a second Ctrl-C)."""
        if self.proc.poll() is not None and not _group_alive(self.proc.pid):
            return  # it exited and its group is empty: the group id may belong to another process by now
        try:
            _signal_group(self.proc.pid, signal.SIGTERM)
            self._wait_group(grace)
        finally:
            if _group_alive(self.proc.pid):
                _signal_group(self.proc.pid, signal.SIGKILL)
                self._wait_group(30.0)

    def _wait_group(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if self.proc.poll() is not None:
                _reap(self.proc.pid)  # where star-kit is PID 1 or a subreaper, the group's orphans are its own
                if not _group_alive(self.proc.pid):
                    return
            if time.monotonic() >= deadline:
                return
            time.sleep(0.05)


def _death_signal():
    """The ``preexec_fn`` that gives the server SIGTERM when star-kit's process dies (Linux's PR_SET_PDEATHSIG), or
    None. Looked up here, in the parent: the child between fork and exec calls only ``prctl`` and ``getppid`` (it
    exits if star-kit died before). Only from the main thread: the signal comes when the *thread* that started the
    server ends, and a worker thread's end is not star-kit's (its atexit stops the server then)."""
    if threading.current_thread() is not threading.main_thread() or not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def in_child() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # star-kit died before the line above
            os._exit(1)

    return in_child


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member that is not a zombie (a zombie is dead; its reaping is its
    parent's, which may never come). On Linux by ``/proc``; elsewhere any member counts."""
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()  # after 'pid (name) ': state, ppid, pgrp, ...
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _reap(pgid: int) -> None:
    """Reap the exited members of process group ``pgid`` that are this process's children."""
    while True:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _excerpt(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    text = " ".join(text.split())
    return (text[:limit] + "…") if len(text) > limit else (text or "(empty body)")


@star_kit.hookimpl
def register_samplers(register):
    register("openai", OpenAISampler)
