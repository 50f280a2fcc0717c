"""Loading task data: local JSONL files under a data folder, or the Hugging Face hub.

A data folder (``--data-dir ROOT`` or ``$STAR_KIT_DATA_DIR``) is laid out like::

    ROOT/gsm8k/{train,test}.jsonl
    ROOT/commonsenseqa/{train,dev}_rand_split.jsonl

Without one, tasks load their hub dataset through ``datasets.load_dataset``; offline, that fails with one line
saying to pass ``--data-dir`` or set ``$STAR_KIT_DATA_DIR``. Every error about a bad row names where it is
(``file:line`` for local files, ``dataset, split S, row i`` for the hub) so a user can open it and look.
"""

from __future__ import annotations

import glob
import json
import os
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from .errors import DataError, StarKitError, one_line
from .store import json_error, json_limit

ENV_VAR = "STAR_KIT_DATA_DIR"


@dataclass(frozen=True)
class Row:
    """One raw record and where it came from (``where`` prefixes every error about it)."""

    where: str
    index: int  # 0-based position in its file or split (stable: used for ids when the data has none)
    data: dict[str, Any]

    def field(self, dotted: str) -> Any:
        """The value at ``a.b.c``; a missing key (or a non-object on the way) is a DataError naming the row."""
        value: Any = self.data
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                raise DataError(f"{self.where}: missing field {dotted!r}")
            value = value[part]
        return value

    def text(self, dotted: str) -> str:
        """A non-empty string field (whitespace stripped)."""
        value = self.field(dotted)
        if not isinstance(value, str):
            raise DataError(f"{self.where}: field {dotted!r} should be a string, got {type(value).__name__}")
        value = value.strip()
        if not value:
            raise DataError(f"{self.where}: empty {dotted!r}")
        return value


@dataclass(frozen=True)
class HubSource:
    """Where a split lives on the Hugging Face hub."""

    path: str
    name: str | None
    split: str

    def __str__(self) -> str:
        return f"{self.path}" + (f" ({self.name})" if self.name else "") + f", split {self.split}"


def rows_count(n: int) -> str:
    """'1 malformed data row', '3 malformed data rows'."""
    return f"{n} malformed data row" + ("" if n == 1 else "s")


def data_root(data_dir: str | os.PathLike | None) -> Path | None:
    """The local data folder: ``data_dir``, else ``$STAR_KIT_DATA_DIR``, else None (use the hub)."""
    chosen, source = (data_dir, "--data-dir") if data_dir else (os.environ.get(ENV_VAR) or None, f"${ENV_VAR}")
    if not chosen:
        return None
    root = Path(chosen).expanduser()
    if root.is_file():
        raise StarKitError(f"{source} {chosen}: a file, not a folder (give the folder that holds the task's files, "
                           "e.g. gsm8k/train.jsonl)", 2)
    if not root.is_dir():
        raise StarKitError(f"{source} {chosen}: no such folder", 2)
    return root


_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of a byte that is not UTF-8


def read_jsonl_rows(path: Path, skipped: list[str] | None = None) -> list[Row]:
    """Every non-blank line of a JSONL file as a :class:`Row`; bad JSON or a non-object names file:line
    (raised, or appended to ``skipped`` when given)."""
    rows: list[Row] = []
    try:
        # surrogateescape: a byte that is not UTF-8 is kept as a marker, so it names its line, not just the file
        fh = open(path, encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with fh:
        for lineno, line in enumerate(fh, 1):
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark (files saved on Windows): not part of the JSON
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                bad = _NOT_UTF8.search(line)
                if bad:
                    raise DataError(f"{where}: not UTF-8 text (byte 0x{ord(bad.group()) - 0xDC00:02x} at column "
                                    f"{bad.start() + 1})")
                try:
                    data = json.loads(line.rstrip("\r\n"))  # the column of an error on this line
                except json.JSONDecodeError as exc:
                    raise DataError(f"{where}: invalid JSON ({json_error(exc, line=False)})") from None
                except (ValueError, RecursionError) as exc:
                    raise DataError(f"{where}: {json_limit(exc)}") from None
                if not isinstance(data, dict):
                    raise DataError(f"{where}: expected a JSON object, got {type(data).__name__}")
            except DataError as exc:
                if skipped is None:
                    raise
                skipped.append(str(exc))
                continue
            rows.append(Row(where, lineno - 1, data))
    return rows


_FORMATS = {".parquet": "parquet", ".csv": "csv", ".json": "json"}  # what datasets reads besides JSONL


def _other_format(path: Path) -> Path | None:
    """The split ``path`` (a .jsonl) in another format a Hugging Face user has: the same name as .parquet, .csv
    or .json (JSON lines or an array), or a ``Dataset.save_to_disk`` folder of the name without the suffix."""
    stem = path.with_suffix("")
    if (stem / "dataset_info.json").is_file():
        return stem
    return next((p for p in (stem.with_suffix(s) for s in _FORMATS) if p.is_file()), None)


def read_dataset_rows(path: Path) -> list[Row]:
    """Every record of a .parquet/.csv/.json file or a ``save_to_disk`` folder as a :class:`Row` (``FILE, row N``,
    1-based); one that datasets cannot read is one line naming it."""
    import datasets

    try:
        if path.is_dir():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                raise DataError(f"{path}: a DatasetDict ({', '.join(ds)}); save each split's Dataset as its own folder")
        else:
            ds = datasets.load_dataset(_FORMATS[path.suffix], data_files=glob.escape(str(path)), split="train")
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow's and datasets' errors: all mean "cannot read this file"
        raise DataError(f"{path}: cannot read ({one_line(exc)})") from None
    return [Row(f"{path}, row {i + 1}", i, dict(record)) for i, record in enumerate(ds)]


#: the variables by which the user asks the Hugging Face libraries to use only their local cache: for datasets (a
#: task's data, lm-eval's), and for models (transformers downloads a model whatever HF_DATASETS_OFFLINE says)
DATASETS_OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
MODELS_OFFLINE = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def hub_offline_mode(variables: tuple[str, ...] = DATASETS_OFFLINE) -> str | None:
    """The one of ``variables`` that is set (asking for the local cache only), or None."""
    return next((v for v in variables if os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")), None)


def hub_unreachable(timeout: float = 3.0, offline: tuple[str, ...] = DATASETS_OFFLINE) -> str | None:
    """Why the Hugging Face hub cannot be asked (offline mode, no connection to ``$HF_ENDPOINT``), or None; at most
    ``timeout`` seconds (the hub clients themselves retry for ~25-30 s offline). Through a proxy: None (the
    client finds out). The one probe of models (a hub id) and datasets (a task's data, lm-eval's tasks)."""
    variable = hub_offline_mode(offline)
    if variable:
        return f"the hub is not asked: {variable} is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    problem = connect_problem(host, endpoint.port or (80 if endpoint.scheme == "http" else 443), timeout)
    return None if problem is None else f"the hub is unreachable: {problem}"


def connect_problem(host: str, port: int, timeout: float = 3.0) -> str | None:
    """Why a TCP connection to ``host:port`` cannot be made ('127.0.0.1:1: Connection refused'), or None; at most
    ``timeout`` seconds, the name lookup included (it runs in a thread: a lookup can hang past any socket
    timeout). The one probe of a service before a client that retries for minutes is pointed at it."""
    result: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as exc:
            result.append(f"{host}:{port}: {exc.strerror or exc}")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else f"{host}:{port}: no answer within {timeout:g}s"


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers now (:func:`hub_unreachable`)."""
    return hub_unreachable(timeout) is None


def no_data_message(task: str, what: str) -> str:
    return (f"task {task!r}: cannot load {what} from the Hugging Face hub (offline?); pass --data-dir ROOT or set "
            f"${ENV_VAR} to a folder of local files")


def load_hub_rows(task: str, source: HubSource) -> list[Row]:
    """A hub split as :class:`Row` s; any failure is one StarKitError line (no traceback)."""
    if not hub_offline_mode() and not hub_reachable():
        raise StarKitError(no_data_message(task, str(source)), 2)  # no data given, none reachable: pass --data-dir
    try:
        import datasets

        ds = datasets.load_dataset(source.path, source.name, split=source.split)
    except Exception as exc:  # ConnectionError, DatasetNotFoundError, ... : all mean "not available here"
        raise StarKitError(f"{no_data_message(task, str(source))} ({one_line(exc)})", 2) from None
    return [Row(f"{source}, row {i}", i, dict(record)) for i, record in enumerate(ds)]


def load_rows(
    task: str,
    data_dir: str | os.PathLike | None,
    local: str,
    hub: HubSource,
    adapt_hub: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    skipped: list[str] | None = None,
) -> list[Row]:
    """Rows of one split: ``ROOT/<local>`` when a data folder is given, else the hub split ``hub``.

    ``adapt_hub`` reshapes a hub record into the local file's layout, so one parser handles both.
    """
    root = data_root(data_dir)
    if root is not None:
        path = root / local
        if not path.is_file():
            other = _other_format(path)
            if other is None and (path.exists() or path.is_symlink()):  # a folder, a FIFO, a device, a dead link
                kind = "a folder" if path.is_dir() else "a link to nothing" if not path.exists() else "not a file"
                raise DataError(f"task {task!r}: {path} is {kind}, not a data file")
            if other is None:
                inner = Path(local).parts[0]  # 'gsm8k': --data-dir DATA/gsm8k is one level too deep
                deep = f"; --data-dir is the folder that holds {inner}/: {root.parent}" if root.name == inner and \
                    len(Path(local).parts) > 1 and (root / Path(local).name).exists() else ""
                raise DataError(f"task {task!r}: {path} not found (the data folder should hold {local}, or the "
                                f"same name as .parquet, .csv or .json, or a datasets save_to_disk folder "
                                f"{Path(local).with_suffix('')}{deep})")
            path = other
        before = len(skipped) if skipped is not None else 0
        rows = read_jsonl_rows(path, skipped) if path.suffix == ".jsonl" else read_dataset_rows(path)
        if not rows:
            dropped = len(skipped) - before if skipped is not None else 0
            raise DataError(f"task {task!r}: {path} has no rows" + (f" ({dropped} malformed, skipped)" if dropped
                                                                     else " (an empty file)"))
        return rows
    rows = load_hub_rows(task, hub)
    if adapt_hub is None:
        return rows
    out = []
    for row in rows:
        try:
            data = adapt_hub(row.data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{row.where}: unexpected hub record layout ({one_line(exc, whole=True)})") from None
        out.append(Row(row.where, row.index, data))
    return out


def parse_rows(rows: list[Row], parse: Callable[[Row], Any], skipped: list[str] | None = None) -> list[Any]:
    """``parse`` each row; a DataError is raised, or (with ``skipped`` given) counted there and the row dropped.
    An example whose ``id`` an earlier row has is such an error too (ids key the samples, resume and the report)."""
    out, first = [], {}
    for row in rows:
        try:
            parsed = parse(row)
            ident = getattr(parsed, "id", None)
            if ident is not None and ident in first:
                raise DataError(f"{row.where}: id {ident!r} repeats that of {first[ident]}")
            if ident is not None:
                first[ident] = row.where
            out.append(parsed)
        except DataError as exc:
            if skipped is None:
                raise
            skipped.append(str(exc))
    return out
