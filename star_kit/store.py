"""The run directory: atomic writes, torn-line-tolerant JSONL, and what is already done (for resume).

Layout::

    RUN/config.yaml
    RUN/outcome.json
    RUN/iter_NN/{samples.jsonl, rationalized.jsonl, train.jsonl, checkpoint/, eval.json, eval_samples.jsonl}
    RUN/metrics.jsonl

A step is done when its artifact exists: every artifact is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import StarKitError


def _scratch_beside(path: Path) -> tuple[int, str]:
    """A new hidden file in ``path``'s folder (made if missing), open: where ``path`` is written before it is
    renamed into place. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    try:
        fd, tmp = _scratch_beside(path)
    except OSError as exc:  # a read-only folder, a file where a folder should be ...
        raise StarKitError(f"could not write {path}: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StarKitError(f"could not write {path}: {exc.strerror or exc}") from exc


def check_writable(path: Path, flag: str) -> None:
    """That a file can be written at ``path`` later (its folder made, a file created and removed there), without
    touching what is at ``path`` now; else one line naming ``flag``, exit code 2."""
    if path.is_dir():
        raise StarKitError(f"{flag} {path}: a folder, not a file", 2)
    try:
        fd, tmp = _scratch_beside(path)  # what _atomic_write_bytes will need there
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise StarKitError(f"{flag} {path}: cannot write there ({exc.strerror or exc})", 2) from None


def json_error(exc: json.JSONDecodeError, line: bool = True) -> str:
    """Where JSON went wrong: 'Expecting value at line 3 column 7' (json's own message ends in ' at' for some
    errors, 'Unterminated string starting at': not said twice); ``line=False`` for one line of a JSONL file."""
    where = f"line {exc.lineno} column {exc.colno}" if line else f"column {exc.colno}"
    return f"{exc.msg.removesuffix(' at')} at {where}"


def _flock_within(fd: int, kind: int, seconds: float) -> bool:
    """``flock(fd, kind)`` without blocking, tried again for up to ``seconds``; whether it was taken."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def check_folder_writable(path: Path, flag: str) -> None:
    """That files can be written under the folder ``path`` later (it exists as a folder, or its nearest existing
    parent is a folder that can be written), without making anything; else one line naming ``flag``, exit 2."""
    if path.exists() and not path.is_dir():
        raise StarKitError(f"{flag} {path}: a file, not a folder", 2)
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise StarKitError(f"{flag} {path}: {existing} is a file, not a folder", 2)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StarKitError(f"{flag} {path}: cannot write in {existing}", 2)


def write_json(path: Path, obj: Any) -> None:
    _atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def jsonl_text(rows: Iterable[dict[str, Any]]) -> str:
    """Rows as JSONL text, one object a line (the one serialisation every JSONL file here uses)."""
    return "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    _atomic_write_bytes(Path(path), jsonl_text(rows).encode())


# Numbers YAML 1.2 reads as floats and YAML 1.1 (PyYAML) as text: ``5e-1``, ``1e3``, ``1.0e5``. Config files are
# read with them as floats (:func:`star_kit.config.load_config_file`), so a string of that form is written quoted.
YAML12_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class ConfigDumper(yaml.SafeDumper):
    """``yaml.safe_dump`` that quotes a string a config file would read back as a YAML 1.2 float."""


ConfigDumper.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_FLOAT, list("-+0123456789."))


def dump_yaml(obj: Any) -> str:
    """``obj`` as config YAML (key order kept) that :func:`star_kit.config.load_config_file` reads back as it was
    (a string that reads as a number, "10" or "1e3", is written quoted and stays a string)."""
    return yaml.dump(obj, Dumper=ConfigDumper, sort_keys=False)


def write_yaml(path: Path, obj: Any) -> None:
    _atomic_write_bytes(Path(path), dump_yaml(obj).encode())


def read_jsonl(path: Path, partial: bool = False, skip_bad: bool = False) -> list[dict[str, Any]]:
    """The rows (JSON objects) of a JSONL file. star-kit writes its files whole (atomically), so a line that is not
    one -- the file was edited or damaged -- stops with one line naming ``file:line``, never a row silently left
    out. ``partial``: an :class:`AppendLog` of work in progress, whose last line a kill may have torn (dropped).
    ``skip_bad``: a viewer's reading (the report shows what it can): such lines are left out, each with a warning
    on stderr naming ``file:line``."""
    rows = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if partial and not raw.endswith(b"\n"):
                break  # torn tail
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                line, problem = "", f"not UTF-8 (byte {exc.start + 1} of the line)"
            else:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    problem = None if isinstance(row, dict) else f"a JSON {type(row).__name__}, not an object"
                except json.JSONDecodeError as exc:
                    problem = f"not JSON ({json_error(exc, line=False)})" if line.endswith("\n") else "cut short"
                except (ValueError, RecursionError) as exc:
                    problem = json_limit(exc)
            if problem and skip_bad:
                print(f"warning: {path}:{number}: {problem}; left out", file=sys.stderr)
                continue
            if problem:
                raise StarKitError(f"{path}:{number}: {problem}; star-kit writes this file whole, so it was edited "
                                   "or damaged", 2)
            rows.append(row)
    return rows


def json_limit(exc: BaseException) -> str:
    """What ``json.loads`` refused, besides a syntax error: JSON valid but beyond what Python reads."""
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply to read"
    return "a JSON integer of more than 4,300 digits" if "digits" in str(exc) else f"not JSON ({exc})"


def read_json(path: Path, keys: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON object of a file star-kit wrote whole (``eval.json``, ``seconds.json`` ...), holding ``keys``;
    a file that is not one (edited or damaged) stops with one line naming it, never a traceback."""
    problem = None
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 (byte {exc.start + 1})"
    except json.JSONDecodeError as exc:
        problem = f"not JSON ({json_error(exc)})"
    except (ValueError, RecursionError) as exc:
        problem = json_limit(exc)
    except OSError as exc:
        raise StarKitError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if problem is None and not isinstance(data, dict):
        problem = f"a JSON {type(data).__name__}, not an object"
    if problem is None:
        missing = [k for k in keys if k not in data]
        problem = f"no {missing[0]!r} in it" if missing else None
    if problem:
        raise StarKitError(f"{path}: {problem}; star-kit writes this file whole, so it was edited or damaged", 2)
    return data


class AppendLog:
    """An append-only JSONL file for work in progress: each batch of rows is written and fsync'ed whole.

    On open, the file is rewritten with ``keep`` (the rows already read back, torn tail dropped), so a line torn
    by a kill never sits in the middle of the file.
    """

    def __init__(self, path: Path, keep: Iterable[dict[str, Any]] | Iterable[Any] = ()):
        self.path = Path(path)
        self.keep = [r if isinstance(r, dict) else r.to_dict() for r in keep]
        self.fh = None

    def __enter__(self) -> "AppendLog":
        write_jsonl(self.path, self.keep)
        self.fh = open(self.path, "a", encoding="utf-8")
        return self

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        try:
            self.fh.write(jsonl_text(rows))
            self.fh.flush()
            os.fsync(self.fh.fileno())
        except OSError as exc:
            raise StarKitError(f"could not write {self.path}: {exc.strerror or exc}") from exc

    def __exit__(self, *exc) -> None:
        if self.fh is not None:
            self.fh.close()


class RunStore:
    """Paths and state of one run directory."""

    # what an iteration's steps leave, in the order they make it (what a resume keeps)
    STEP_FILES = ("samples.jsonl", "rationalized.jsonl", "train.jsonl", "checkpoint", "eval.json")

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def outcome_path(self) -> Path:
        """What the plugins' options decided when config.yaml was written (a resume compares against it)."""
        return self.root / "outcome.json"

    def read_outcome(self) -> dict[str, Any]:
        """outcome.json's record (config key -> what those options decided), {} where the run predates it."""
        return read_json(self.outcome_path) if self.outcome_path.is_file() else {}

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    def iterations(self) -> list[int]:
        """The iterations whose ``iter_NN`` folder the run directory holds, in order."""
        return sorted(int(p.name[5:]) for p in self.root.glob("iter_[0-9]*")
                      if p.name[5:].isascii() and p.name[5:].isdigit() and p.is_dir())

    def iter_dir(self, iteration: int) -> Path:
        return self.root / f"iter_{iteration:02d}"

    def artifact(self, iteration: int, name: str) -> Path:
        return self.iter_dir(iteration) / name

    def has(self, iteration: int, name: str) -> bool:
        path = self.artifact(iteration, name)
        if name == "checkpoint":  # a model folder, or a trainer's adapter folder (as the loop publishes either)
            return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()
        return path.exists()

    def plugin_used(self, kind: str, name: str) -> str | None:
        """Where the run's ``kind`` ('task', 'extractor', 'sampler') named ``name`` came from, as its first
        evaluation recorded it (eval.json's ``plugins``: "star-kit-subtract 0.0.1 (plugin 'subtract')"), for the
        error of a resume or a bench whose plugin is no longer installed: "the run used it from ..., as
        RUN/iter_00/eval.json records: install that, or load it with --plugin"; None where nothing says. The run
        directory is data: only a regular file of a folder that is no link, of a bounded size, is read, and what
        it says is shown as one line of printable characters."""
        import importlib.metadata as md

        if self.foreign_entry():  # a link or a FIFO anywhere in it: read nothing (the caller's check names it)
            return None
        for iteration in self.iterations():
            path = self.artifact(iteration, "eval.json")
            try:
                if not path.is_file() or path.stat().st_size > MAX_RECORD_BYTES:
                    continue
                recorded = json.loads(path.read_text(encoding="utf-8")).get("plugins")
            except (OSError, ValueError, AttributeError, RecursionError):
                continue
            if not isinstance(recorded, dict):
                continue
            source = recorded.get(kind)
            if not isinstance(source, str):
                return None
            source = "".join(c for c in source.strip().split("\n")[0][:200] if c.isprintable())
            distribution = source.split()[0] if source.split() else ""
            if distribution == "(--plugin)":
                install = "loaded with --plugin then: load it again"
            elif not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?", distribution):
                return None
            else:
                try:
                    md.distribution(distribution)
                    install = (f"{distribution} is installed but did not register it here: is it left out by "
                               f"STAR_KIT_LOAD_PLUGINS, or did it fail to import (a warning above)?")
                except md.PackageNotFoundError:
                    install = f"install that distribution (pip install {distribution}) or load its module with --plugin"
            return f"the run used {kind} {name!r} from {source}, as {path} records: {install}"
        return None

    def foreign_entry(self) -> str | None:
        """The first entry of the run directory that star-kit never writes there: a symbolic link, or anything but
        a regular file or a folder (a FIFO, a device, a socket); None when there is none. A run directory is data
        that star-kit reads back and writes over: through a link, a resume would delete or append to files
        elsewhere and the report would embed them; a FIFO would block a read for ever. The folders of
        :data:`OTHER_TOOLS` (a real folder, not a link) are another tool's, which star-kit never reads or writes:
        not looked into (W&B links its latest run and logs there)."""
        for folder, dirs, files in os.walk(self.root, followlinks=False):
            if Path(folder) == self.root:
                dirs[:] = [d for d in dirs if d not in OTHER_TOOLS or (self.root / d).is_symlink()]
            for name in sorted(dirs + files):
                path = Path(folder) / name
                try:
                    mode = path.lstat().st_mode
                except OSError:
                    continue
                if stat.S_ISLNK(mode):
                    return f"{path} is a symbolic link"
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    return f"{path} is not a regular file or a folder"
        return None

    def check_entries(self, what: str) -> None:
        """Stop with one line when :meth:`foreign_entry` finds one (``what``: '--resume DIR', 'report')."""
        found = self.foreign_entry()
        if found:
            raise StarKitError(f"{what}: {found}: a run directory holds only the files and folders star-kit writes "
                               f"(copy it with its links resolved, or remove that entry)", 2)

    def finished_steps(self, iteration: int) -> list[str]:
        """The :data:`STEP_FILES` that ``iteration`` holds."""
        return [name for name in self.STEP_FILES if self.has(iteration, name)]

    def metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl's rows; each ``checkpoint`` names this directory's ``iter_NN/checkpoint``, absolute,
        whatever path the row recorded (a copied or moved run directory's rows name the folder it was made in; a
        resume goes on from, and records, its own): a run directory never sends star-kit to load a model from
        elsewhere, and a missing folder is never read as a hub id (``--resume .``: ``iter_01/checkpoint``)."""
        rows = read_jsonl(self.metrics_path) if self.metrics_path.exists() else []
        for row in rows:
            if row.get("checkpoint") is not None:
                iteration = row.get("iteration")
                row["checkpoint"] = str(self.artifact(iteration, "checkpoint").absolute()) \
                    if isinstance(iteration, int) and not isinstance(iteration, bool) and iteration >= 0 else None
        return rows

    def record(self, row: dict[str, Any]) -> None:
        """Add (or replace) one iteration's metrics line; rewrites the file atomically."""
        rows = [r for r in self.metrics() if r.get("iteration") != row["iteration"]]
        rows.append(row)
        rows.sort(key=lambda r: r["iteration"])
        write_jsonl(self.metrics_path, rows)

    def publish_dir(self, tmp: Path, iteration: int, name: str) -> Path:
        """Move a finished folder (e.g. a checkpoint) into place atomically."""
        final = self.artifact(iteration, name)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return final


#: the largest record of a run directory read for a message (eval.json's plugins)
MAX_RECORD_BYTES = 64 * 1024 * 1024

#: folders of a run directory that another tool writes, with its own links: the W&B logger's ``wandb`` (W&B's
#: files, in the run directory as ``wandb.init(dir=RUN)`` puts them)
OTHER_TOOLS = ("wandb",)


class RunLock:
    """An exclusive lock on a run directory: ``RUN/.lock`` holds the owner's PID, host and start time, and an
    ``fcntl.flock`` on it is held for the life of the run (the kernel drops it when the process dies, however it
    dies). A second run on the same directory is refused in one line naming the holder; a lock file left behind
    by a dead process (its flock free) is simply taken over. Released (and the file removed) on ``release``."""

    NAME = ".lock"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / self.NAME
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        while True:
            try:  # never through a symbolic link, never a FIFO or a device: only a regular file of its own
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise StarKitError(f"cannot lock run directory {self.root}: {self.path}: it is a symbolic link "
                                       f"(star-kit writes this file itself: remove it)", 2) from exc
                raise StarKitError(f"cannot lock run directory {self.root}: {exc.strerror or exc}") from exc
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise StarKitError(f"cannot lock run directory {self.root}: {self.path} is not a regular file "
                                   f"(star-kit writes this file itself: remove it)", 2)
            if not _flock_within(fd, fcntl.LOCK_EX, 0.25):  # a moment's wait: a bench looking at it (busy)
                holder = self.holder()
                os.close(fd)
                raise StarKitError(self.in_use(self.root, holder), 2) from None
            try:  # the file we locked may have been removed (and re-created) by a run that just released it
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime())}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise StarKitError(f"cannot lock run directory {self.root}: writing {self.path}: "
                               f"{exc.strerror or exc}") from exc
        self.fd = fd
        return self

    @staticmethod
    def in_use(root: Path, holder: str) -> str:
        return f"{root} is in use by another star-kit run ({holder}); wait for it to finish or stop it"

    @classmethod
    def busy(cls, root: Path) -> str | None:
        """Who holds ``root``'s lock, when a live run holds it (:meth:`holder`); else None. Creates and writes
        nothing; it holds a shared lock for an instant (a run starting then waits that instant, see ``acquire``).
        ``bench --run`` of a run that is still going; ``--print-config`` of a run directory in use."""
        lock = cls(root)
        try:
            fd = os.open(lock.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return lock.holder()
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def holder(self) -> str:
        """Who holds the lock, as written in the lock file."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return f"pid {info['pid']} on {info['host']}, since {info['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return f"holder unknown: {self.path} is locked but unreadable"

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: nobody else can be between
        except OSError:
            pass
        os.close(self.fd)  # drops the flock
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
