"""``report.html``: the page template, its style and its script (package files beside this module) filled with a
run's tables, its charts (an SVG image, inline as a ``data:`` URI) and its data.

The page fetches nothing: a Content-Security-Policy allows only its own inline style and script (by their hashes)
and ``data:`` images. Model text is untrusted: it is embedded as JSON with ``<``, ``>`` and ``&`` escaped, and the
rationale browser (``report.js``) only ever assigns it to ``textContent``; the static tables escape every cell.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from ..labels import format_counts
from .data import maj_label, pct, prompt_cell, sampled_ahead_cell, summary

_SLOT = re.compile(r"@([A-Z]+)@")


@cache
def asset(name: str) -> str:
    """A file shipped beside this module (``report.html``, ``report.css``, ``report.js``)."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def render_html(data: dict[str, Any], charts_svg: bytes) -> str:
    """The page for ``data`` (:func:`star_kit.report.data.load_run`) with ``charts_svg`` as its charts."""
    css, js = asset("report.css"), asset("report.js")
    csp = (f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; img-src data:; "
           f"base-uri 'none'; form-action 'none'")
    title = f"star-kit report · {data['run']}"
    slots = {
        "CSP": html.escape(csp),
        "TITLE": html.escape(title),
        "SUMMARY": html.escape(summary(data)),
        "PATH": html.escape(data["path"]),
        "CHARTS": "data:image/svg+xml;base64," + base64.b64encode(charts_svg).decode("ascii"),
        "METRICS": _metrics_table(data),
        "CONFIG": _config_table(data["config"]),
        "CSS": css,
        "JS": js,
        "DATA": _script_json(data),
    }
    # One pass: text put into a slot is never searched for slots again.
    return _SLOT.sub(lambda m: slots[m.group(1)], asset("report.html"))


def _metrics_table(data: dict[str, Any]) -> str:
    """The metrics as a static table (readable without JavaScript); every cell escaped."""
    phases = data["phases"]
    label = maj_label(data["metrics"])  # maj@K beside the greedy accuracy, when it was on
    # the answer labels (choice letters) predicted on the held-out split and kept for training, when the task has them
    answers = any(isinstance(r.get(k), dict) and r[k] for r in data["metrics"] for k in ("eval_labels", "train_labels"))
    head = ["iteration", "accuracy", "± stderr", "prompt", *([label, "± stderr"] if label else []),
            *(["eval answers", "train answers"] if answers else []), "eval n", "kept / sampled",
            "no answer", "rejected by verifier", "rationalized / tried", "train ex", "steps",
            *(f"{p} s" for p in phases)]
    lines = ["<table class='metrics'><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
             + "</tr></thead><tbody>"]
    for r in data["metrics"]:
        n = r.get("iteration")
        stderr, maj_stderr = r.get("accuracy_stderr"), r.get("maj_accuracy_stderr")
        secs = r.get("seconds") if isinstance(r.get("seconds"), dict) else {}
        maj = [pct(r.get("maj_accuracy")) if isinstance(r.get("maj_accuracy"), (int, float)) else "",
               "" if not isinstance(maj_stderr, (int, float)) else f"{100 * maj_stderr:.1f}"]
        cells = [
            f"{n} (base model)" if n == 0 else str(n),
            pct(r.get("accuracy")),
            "" if not isinstance(stderr, (int, float)) else f"{100 * stderr:.1f}",
            prompt_cell(n if isinstance(n, int) else -1, r.get("eval_prompt")),
            *(maj if label else []),
            *([format_counts(r.get("eval_labels")), format_counts(r.get("train_labels"))] if answers else []),
            str(r.get("eval_examples", "")),
            f"{r.get('kept', 0)} / {r.get('sampled', 0)}" if n else "",
            str(r.get("no_answer", "")) if n else "",
            str(r.get("unverified", 0)) if n else "",
            f"{r.get('rationalized', 0)} / {r.get('rationalization_attempts', 0)}" if n else "",
            str(r.get("train_examples", "")) if n else "",
            str(r.get("steps", "")) if n else "",
            *((p == "sample" and sampled_ahead_cell(r.get("sampled_ahead_in")))
              or ("" if not isinstance(secs.get(p), (int, float)) else f"{secs[p]:.1f}") for p in phases),
        ]
        lines.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    lines.append("</tbody></table>")
    return "".join(lines)


def _config_cell(value: Any) -> str:
    """A string as written in config.yaml (no JSON quotes); numbers, booleans, lists and mappings as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _config_table(config: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_config_cell(v))}</td></tr>"
                   for k, v in config.items())
    return f"<table class='config'>{rows}</table>" if rows else "<p>no config.yaml</p>"


def _script_json(obj: Any) -> str:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' survive (they become \\u escapes)."""
    # default=str: a YAML date or set an edited config.yaml may hold is shown as its text
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode() + "'"
