"""``star-kit report DIR``: one self-contained HTML page and one PNG that show a run.

``DIR/report.html`` needs nothing but a browser: the CSS, the JavaScript and the run's data are inline, nothing is
fetched (a Content-Security-Policy with the hashes of the inline style and script forbids everything else). It
draws its own charts from the embedded JSON (inline SVG: accuracy with stderr bars, kept / rationalized /
not kept per iteration, training steps, seconds per phase) and has a rationale browser: pick a set (training
samples or held-out evaluation) and an iteration, filter correct / rationalized / failed, search the text, click
a question to see what it got in every iteration side by side.

``DIR/accuracy.png`` shows the same four charts, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Everything comes from ``metrics.jsonl``, ``config.yaml``, ``iter_NN/samples.jsonl``, ``iter_NN/rationalized.jsonl``
and ``iter_NN/eval_samples.jsonl`` (+ ``eval_docs.jsonl`` for the held-out questions). Model text is untrusted: the
HTML embeds it as JSON with ``<``, ``>`` and ``&`` escaped, and the script only ever assigns it to ``textContent``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from .errors import StarKitError

PHASES = ("sample", "rationalize", "train", "evaluate")
STATUSES = ("correct", "rationalized", "failed")
_ITER_DIR = re.compile(r"^iter_(\d+)$")


# -- reading a run ---------------------------------------------------------------------------------------------
def _finite(value: Any) -> Any:
    """JSON-safe numbers: NaN and infinities become None (``JSON.parse`` rejects them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _rows(path: Path) -> list[dict[str, Any]]:
    from .store import read_jsonl

    if not path.is_file():
        return []
    return [row for row in read_jsonl(path) if isinstance(row, dict)]


def _attempt(row: dict[str, Any]) -> list[Any]:
    """[completion, predicted, accepted, hinted, rejected] of one sample row (accepted: the answer is right and the
    rationale verifier, if any, did not reject it; rejected: the verifier's reason, or None)."""
    predicted, rejected = row.get("predicted"), row.get("rejected") if row.get("verified") is False else None
    return [_text(row.get("completion")), None if predicted is None else _text(predicted),
            bool(row.get("correct")) and row.get("verified") is not False, bool(row.get("hinted")),
            None if rejected is None else _text(rejected)]


def _status(attempts: list[list[Any]]) -> str:
    """correct: a hint-free sample reached the answer; rationalized: only a hinted one did; failed: none did."""
    if any(a[2] and not a[3] for a in attempts):
        return "correct"
    if any(a[2] and a[3] for a in attempts):
        return "rationalized"
    return "failed"


def _eval_question(doc: dict[str, Any]) -> str:
    """The last question of an lm-eval doc's few-shot prompt (the one being asked)."""
    prompt = _text(doc.get("prompt")).rstrip()
    last = prompt.rsplit("\n\n", 1)[-1]
    if last.endswith("A:"):
        last = last[:-2].rstrip()
    return last


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Everything the report shows, as one JSON-serialisable dict."""
    from .config import load_config_file, redact
    from .store import RunStore

    root = Path(run_dir)
    if not root.is_dir():
        raise StarKitError(f"report: {root} is not a directory", 2)
    store = RunStore(root)
    if not store.metrics_path.is_file():
        raise StarKitError(f"report: {root} has no metrics.jsonl (not a star-kit run directory, or no iteration "
                           f"has finished yet)", 2)
    metrics = sorted((r for r in _rows(store.metrics_path) if isinstance(r.get("iteration"), int)),
                     key=lambda r: r["iteration"])
    config: dict[str, Any] = {}
    if store.config_path.is_file():
        try:
            config = redact(load_config_file(store.config_path))  # a run made before redaction may hold secrets
        except StarKitError:
            config = {}

    iterations = sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := _ITER_DIR.match(p.name)))
    questions: dict[str, dict[str, list[str]]] = {"train": {}, "eval": {}}
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {"train": {}, "eval": {}}
    for n in iterations:
        d = store.iter_dir(n)
        # Training samples: the hint-free attempt(s) and the hinted rationalization attempt(s).
        by_id: dict[str, list[list[Any]]] = {}
        for name in ("samples.jsonl", "rationalized.jsonl"):
            for row in _rows(d / name):
                qid = _text(row.get("example_id"))
                by_id.setdefault(qid, []).append(_attempt(row))
                questions["train"].setdefault(qid, [_text(row.get("question")), _text(row.get("gold"))])
        if by_id:
            samples["train"][str(n)] = [{"id": qid, "s": _status(a), "a": a} for qid, a in by_id.items()]
        # Held-out evaluation: what M(n) answered (iteration 0 = the few-shot base model).
        docs = {_text(doc.get("id")): doc for doc in _rows(d / "eval_docs.jsonl")}
        rows = []
        for row in _rows(d / "eval_samples.jsonl"):
            qid = _text(row.get("example_id"))
            attempt = _attempt({**row, "hinted": False})
            questions["eval"].setdefault(qid, [_eval_question(docs.get(qid, {})), _text(row.get("gold"))])
            rows.append({"id": qid, "s": "correct" if attempt[2] else "failed", "a": [attempt]})
        if rows:
            samples["eval"][str(n)] = rows
    return _finite({
        "run": root.resolve().name,
        "path": str(root),
        "config": config,
        "metrics": metrics,
        "phases": _phases(metrics),
        "questions": questions,
        "samples": samples,
    })


def _phases(metrics: list[dict[str, Any]]) -> list[str]:
    seen = [p for p in PHASES if any(p in (r.get("seconds") or {}) for r in metrics)]
    extra = sorted({k for r in metrics for k in (r.get("seconds") or {})} - set(PHASES))
    return seen + extra


# -- writing the report ----------------------------------------------------------------------------------------
def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``RUN/report.html`` and ``RUN/accuracy.png``; return their paths."""
    from .store import _atomic_write_bytes

    root = Path(run_dir)
    data = load_run(root)
    html_path, png_path = root / "report.html", root / "accuracy.png"
    _atomic_write_bytes(html_path, render_html(data).encode("utf-8"))
    _atomic_write_bytes(png_path, render_png(data))
    return html_path, png_path


def _script_json(obj: Any) -> str:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' survive (they become \\u escapes)."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode() + "'"


def _pct(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{100 * value:.1f}%"


def _metrics_table(data: dict[str, Any]) -> str:
    """The metrics as a static table (readable without JavaScript); every cell escaped."""
    phases = data["phases"]
    head = ["iteration", "accuracy", "± stderr", "eval n", "kept / sampled", "no answer", "rejected by verifier",
            "rationalized / tried",
            "train ex", "steps", *(f"{p} s" for p in phases)]
    lines = ["<table class='metrics'><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
             + "</tr></thead><tbody>"]
    for r in data["metrics"]:
        n = r.get("iteration")
        stderr = r.get("accuracy_stderr")
        secs = r.get("seconds") or {}
        cells = [
            f"{n} (few-shot)" if n == 0 else str(n),
            _pct(r.get("accuracy")),
            "" if not isinstance(stderr, (int, float)) else f"{100 * stderr:.1f}",
            str(r.get("eval_examples", "")),
            f"{r.get('kept', 0)} / {r.get('sampled', 0)}" if n else "",
            str(r.get("no_answer", "")) if n else "",
            str(r.get("unverified", 0)) if n else "",
            f"{r.get('rationalized', 0)} / {r.get('rationalization_attempts', 0)}" if n else "",
            str(r.get("train_examples", "")) if n else "",
            str(r.get("steps", "")) if n else "",
            *("" if not isinstance(secs.get(p), (int, float)) else f"{secs[p]:.1f}" for p in phases),
        ]
        lines.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    lines.append("</tbody></table>")
    return "".join(lines)


def _config_table(config: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v, ensure_ascii=False, default=str))}</td></tr>"
        for k, v in config.items())
    return f"<table class='config'>{rows}</table>" if rows else "<p>no config.yaml</p>"


def _summary(data: dict[str, Any]) -> str:
    config, metrics = data["config"], data["metrics"]
    accs = [(r["iteration"], r.get("accuracy")) for r in metrics if isinstance(r.get("accuracy"), (int, float))]
    parts = [f"task {config.get('task', '?')}", f"model {config.get('model', '?')}",
             f"{len([r for r in metrics if r['iteration'] > 0])} STaR iteration(s) recorded"]
    if accs:
        base = next((a for n, a in accs if n == 0), None)
        best_n, best = max(accs, key=lambda t: (t[1], -t[0]))
        if base is not None:
            parts.append(f"few-shot baseline {_pct(base)}")
        parts.append(f"best {_pct(best)} at iteration {best_n}")
    return " · ".join(parts)


def render_html(data: dict[str, Any]) -> str:
    csp = (f"default-src 'none'; style-src {_csp_hash(_CSS)}; script-src {_csp_hash(_JS)}; img-src data:; "
           f"base-uri 'none'; form-action 'none'")
    title = f"star-kit report · {data['run']}"
    return (_PAGE
            .replace("@CSP@", html.escape(csp))
            .replace("@TITLE@", html.escape(title))
            .replace("@SUMMARY@", html.escape(_summary(data)))
            .replace("@PATH@", html.escape(data["path"]))
            .replace("@METRICS@", _metrics_table(data))
            .replace("@CONFIG@", _config_table(data["config"]))
            .replace("@CSS@", _CSS)
            .replace("@JS@", _JS)
            .replace("@DATA@", _script_json(data)))


def render_png(data: dict[str, Any]) -> bytes:
    """The four charts as a PNG (matplotlib's Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = data["metrics"]
    its = [r["iteration"] for r in metrics]
    fig = Figure(figsize=(12, 7.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    (ax_acc, ax_cnt), (ax_steps, ax_sec) = fig.subplots(2, 2)
    fig.suptitle(f"star-kit run {data['run']}: {_summary(data)}", fontsize=10)

    pts = [(r["iteration"], 100 * r["accuracy"], 100 * (r.get("accuracy_stderr") or 0.0))
           for r in metrics if isinstance(r.get("accuracy"), (int, float))]
    if pts:
        xs, ys, es = zip(*pts)
        ax_acc.errorbar(xs, ys, yerr=es, marker="o", capsize=4, color="#1f6feb")
        for x, y in zip(xs, ys):
            ax_acc.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax_acc.set_title("held-out accuracy (%) ± stderr; 0 = few-shot baseline", fontsize=10)
    ax_acc.set_ylim(0, max([100 * 0.1] + [min(100.0, y + e) * 1.15 for _, y, e in pts]))

    kept = [r.get("kept", 0) for r in metrics]
    rescued = [r.get("rationalized", 0) for r in metrics]
    rest = [max(0, r.get("sampled", 0) - r.get("kept", 0) - r.get("rationalized", 0)) for r in metrics]
    ax_cnt.bar(its, kept, color="#2da44e", label="kept (correct)")
    ax_cnt.bar(its, rescued, bottom=kept, color="#8250df", label="rationalized")
    ax_cnt.bar(its, rest, bottom=[a + b for a, b in zip(kept, rescued)], color="#d0d7de", label="not kept")
    ax_cnt.set_title("training samples: kept, rationalized, not kept", fontsize=10)
    ax_cnt.legend(fontsize=8, loc="upper left")

    steps = [r.get("steps", 0) for r in metrics]
    bars = ax_steps.bar(its, steps, color="#bf8700")
    ax_steps.bar_label(bars, fontsize=8)
    ax_steps.set_title("training steps", fontsize=10)

    bottom = [0.0] * len(metrics)
    colors = {"sample": "#1f6feb", "rationalize": "#8250df", "train": "#bf8700", "evaluate": "#2da44e"}
    for phase in data["phases"]:
        vals = [float((r.get("seconds") or {}).get(phase) or 0.0) for r in metrics]
        ax_sec.bar(its, vals, bottom=bottom, label=phase, color=colors.get(phase))
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax_sec.set_title("seconds per phase", fontsize=10)
    if data["phases"]:
        ax_sec.legend(fontsize=8, loc="upper left")

    from matplotlib.ticker import MaxNLocator

    for ax in (ax_cnt, ax_steps):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_acc, ax_cnt, ax_steps, ax_sec):
        ax.set_xlabel("iteration", fontsize=9)
        ax.set_xticks(its or [0])
        ax.set_xlim(min(its or [0]) - 0.5, max(its or [0]) + 0.5)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(labelsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# -- command line ----------------------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``star-kit report`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "report", help="write DIR/report.html (charts + rationale browser) and DIR/accuracy.png for a run",
        description="Write a self-contained HTML report (charts and a rationale browser; no network) and a PNG "
                    "of the accuracy, counts, steps and timings of the star-kit run in DIR.")
    p.add_argument("run_dir", metavar="DIR", help="a star-kit run directory (holds metrics.jsonl)")
    return p


def cmd_report(args: argparse.Namespace) -> int:
    from .cli import console

    html_path, png_path = write_report(args.run_dir)
    console.print(f"report: {html_path}\nchart:  {png_path}", highlight=False, markup=False)
    return 0


def after_run(run_dir: str | Path) -> None:
    """The report at the end of ``star-kit run``: a failure prints a warning and never fails the run."""
    from rich.markup import escape

    from .cli import console, err_console

    try:
        html_path, _ = write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - the run itself succeeded; the report is a bonus
        err_console.print(f"[yellow]warning:[/] report not written: {escape(type(exc).__name__)}: "
                          f"{escape(str(exc))}", highlight=False)
        return
    console.print(f"report: {html_path}", highlight=False, markup=False)


# -- the page --------------------------------------------------------------------------------------------------
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="@CSP@">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>@CSS@</style>
</head>
<body>
<header>
<h1>@TITLE@</h1>
<p class="summary">@SUMMARY@</p>
<p class="path">@PATH@</p>
</header>
<section id="charts-section">
<h2>Iterations</h2>
<div id="charts" aria-label="charts"></div>
@METRICS@
<details><summary>config.yaml</summary>@CONFIG@</details>
</section>
<section id="browser">
<h2>Rationales</h2>
<div class="controls">
<label>set <select id="set"></select></label>
<label>iteration <select id="iteration"></select></label>
<span class="filters" id="filters" role="radiogroup" aria-label="filter"></span>
<input id="search" type="search" placeholder="search question, rationale, answer" aria-label="search">
<span id="count" class="count"></span>
</div>
<div class="panes">
<ol id="list" class="list"></ol>
<div id="detail" class="detail"><p class="hint">Click a question to see its rationale in every iteration.</p></div>
</div>
</section>
<script type="application/json" id="star-data">@DATA@</script>
<script>@JS@</script>
</body>
</html>
"""

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d0d7de;--bg:#fff;--soft:#f6f8fa;--ok:#2da44e;--rat:#8250df;
--bad:#cf222e;--acc:#1f6feb;--steps:#bf8700}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);
margin:0 auto;padding:16px 24px;max-width:1500px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:20px 0 8px}
.summary{margin:0;color:var(--fg)}.path{margin:2px 0 0;color:var(--muted);font-size:12px}
#charts svg{width:100%;height:auto;display:block;border:1px solid var(--line);border-radius:6px}
svg text{font:11px system-ui,sans-serif;fill:var(--fg)}
svg .ptitle{font-weight:600;font-size:12px}
svg .ytick{text-anchor:end;fill:var(--muted)}svg .xtick{text-anchor:middle;fill:var(--muted)}
svg .axlabel{text-anchor:middle;fill:var(--muted)}svg .vlabel{text-anchor:middle;font-size:10px}
svg .grid{stroke:#eaeef2;stroke-width:1}svg .axis{stroke:var(--line)}
svg .accline{fill:none;stroke:var(--acc);stroke-width:2}svg .accpt{fill:var(--acc)}
svg .err{stroke:var(--acc);stroke-width:1.5}svg .empty{fill:var(--muted);text-anchor:middle}
table{border-collapse:collapse;margin:10px 0;font-size:13px}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:right;vertical-align:top}
th{background:var(--soft)}table.config th,table.config td{text-align:left;font-family:ui-monospace,monospace}
details{margin:6px 0}summary{cursor:pointer;color:var(--muted)}
.controls{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin-bottom:8px}
select,input[type=search]{font:inherit;padding:3px 6px;border:1px solid var(--line);border-radius:6px}
input[type=search]{min-width:260px}
.filters button{font:inherit;padding:3px 10px;border:1px solid var(--line);background:var(--soft);cursor:pointer}
.filters button:first-child{border-radius:6px 0 0 6px}.filters button:last-child{border-radius:0 6px 6px 0}
.filters button[aria-pressed=true]{background:var(--fg);color:#fff;border-color:var(--fg)}
.count{color:var(--muted)}
.panes{display:grid;grid-template-columns:minmax(300px,2fr) 3fr;gap:14px;align-items:start}
.list{list-style:none;margin:0;padding:0;border:1px solid var(--line);border-radius:6px;max-height:760px;overflow:auto}
.list li{padding:6px 10px;border-bottom:1px solid var(--line);cursor:pointer}
.list li:hover{background:var(--soft)}.list li.selected{background:#ddf4ff}
.list .q{font-weight:600;white-space:pre-wrap;word-break:break-word}
.list .meta{color:var(--muted);font-size:12px}
.list .c{font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap;word-break:break-word;
overflow:hidden;display:-webkit-box;-webkit-line-clamp:2;-webkit-box-orient:vertical}
.list .more{text-align:center;color:var(--acc)}.list .none{color:var(--muted);cursor:default}
.badge{display:inline-block;padding:0 6px;border-radius:10px;font-size:11px;color:#fff;margin-right:6px}
.badge.correct{background:var(--ok)}.badge.rationalized{background:var(--rat)}.badge.failed{background:var(--bad)}
.badge.absent{background:var(--muted)}
.detail{border:1px solid var(--line);border-radius:6px;padding:10px;min-height:120px;overflow:auto}
.detail .hint{color:var(--muted)}.detail h3{margin:0 0 4px;font-size:15px;white-space:pre-wrap;word-break:break-word}
.cols{display:grid;grid-auto-flow:column;grid-auto-columns:minmax(220px,1fr);gap:10px;margin-top:8px}
.col{border:1px solid var(--line);border-radius:6px;padding:8px;background:var(--soft)}
.col.current{border-color:var(--acc);box-shadow:0 0 0 1px var(--acc)}
.col h4{margin:0 0 6px;font-size:13px}
.col pre{white-space:pre-wrap;word-break:break-word;font:12px/1.4 ui-monospace,monospace;margin:4px 0;
background:#fff;border:1px solid var(--line);border-radius:4px;padding:6px}
.col .label{font-size:11px;color:var(--muted);text-transform:uppercase;letter-spacing:.03em}
.col .pred{font-size:12px}
"""

_JS = r"""
(function () {
"use strict";
var DATA = JSON.parse(document.getElementById("star-data").textContent);
var SVGNS = "http://www.w3.org/2000/svg";
var STATUSES = ["correct", "rationalized", "failed"];
var PHASE_COLORS = {sample: "#1f6feb", rationalize: "#8250df", train: "#bf8700", evaluate: "#2da44e"};
var EXTRA_COLORS = ["#0a3069", "#953800", "#6e7781", "#116329"];

function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function sv(parent, tag, attrs, text) {
  var e = document.createElementNS(SVGNS, tag);
  for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, String(attrs[k]));
  if (text !== undefined && text !== null) e.textContent = String(text);
  parent.appendChild(e);
  return e;
}
function num(v) { return typeof v === "number" && isFinite(v) ? v : null; }
function pct(v) { return v === null ? "n/a" : (100 * v).toFixed(1) + "%"; }
// A y scale from 0 with four or five ticks at a "nice" step (1, 2 or 5 x 10^k; whole numbers when integral).
function scale(v, integral) {
  if (!(v > 0)) v = 1;
  var raw = v / 4, p = Math.pow(10, Math.floor(Math.log(raw) / Math.LN10)), step = 10 * p;
  [1, 2, 5, 10].some(function (m) { if (m * p >= raw) { step = m * p; return true; } return false; });
  if (integral) step = Math.max(1, Math.round(step));
  return {step: step, max: Math.ceil(v / step - 1e-9) * step};
}
function fmtTick(v) { return v === Math.round(v) ? String(Math.round(v)) : String(Math.round(v * 100) / 100); }

// -- charts ------------------------------------------------------------------------------------------------
var M = (DATA.metrics || []).slice().sort(function (a, b) { return a.iteration - b.iteration; });

function panel(svg, px, py, pw, ph, title, sc) {
  var yMax = sc.max;
  var m = {l: 48, r: 14, t: 28, b: 34};
  var g = sv(svg, "g", {"class": "panel", transform: "translate(" + px + "," + py + ")"});
  var W = pw - m.l - m.r, H = ph - m.t - m.b, n = Math.max(M.length, 1), step = W / n;
  sv(g, "text", {x: m.l, y: 16, "class": "ptitle"}, title);
  var y = function (v) { return m.t + H - (v / yMax) * H; };
  var x = function (i) { return m.l + step * (i + 0.5); };
  for (var v = 0; v <= yMax + 1e-9; v += sc.step) {
    sv(g, "line", {x1: m.l, x2: m.l + W, y1: y(v), y2: y(v), "class": "grid"});
    sv(g, "text", {x: m.l - 6, y: y(v) + 4, "class": "ytick"}, fmtTick(v));
  }
  sv(g, "line", {x1: m.l, x2: m.l + W, y1: y(0), y2: y(0), "class": "axis"});
  M.forEach(function (r, i) { sv(g, "text", {x: x(i), y: m.t + H + 15, "class": "xtick"}, r.iteration); });
  sv(g, "text", {x: m.l + W / 2, y: ph - 4, "class": "axlabel"}, "iteration (0 = few-shot baseline)");
  if (!M.length) sv(g, "text", {x: m.l + W / 2, y: m.t + H / 2, "class": "empty"}, "no iterations recorded");
  return {g: g, x: x, y: y, bw: Math.min(step * 0.6, 56), m: m, W: W, H: H};
}

function legend(p, items) {
  var xoff = p.m.l + p.W;
  for (var i = items.length - 1; i >= 0; i--) {
    var label = items[i][0], color = items[i][1];
    var t = sv(p.g, "text", {x: 0, y: 17}, label), w = 0;
    try { w = t.getComputedTextLength(); } catch (e) { w = 0; }
    if (!(w > 0)) w = label.length * 6.5;
    xoff -= w + 24;
    t.setAttribute("x", String(xoff + 14));
    sv(p.g, "rect", {x: xoff, y: 8, width: 10, height: 10, fill: color});
  }
}

function stacked(p, series, labelTotal) {
  M.forEach(function (r, i) {
    var base = 0;
    series.forEach(function (s) {
      var v = num(s.get(r)) || 0;
      if (v > 0) {
        var rect = sv(p.g, "rect", {x: p.x(i) - p.bw / 2, y: p.y(base + v), width: p.bw,
                                    height: Math.max(0, p.y(base) - p.y(base + v)), fill: s.color});
        sv(rect, "title", {}, "iteration " + r.iteration + ": " + s.name + " " + (Math.round(v * 100) / 100));
      }
      base += v;
    });
    if (labelTotal && base > 0) sv(p.g, "text", {x: p.x(i), y: p.y(base) - 4, "class": "vlabel"}, labelTotal(base, r));
  });
}

function drawCharts() {
  var host = document.getElementById("charts");
  var Wt = 1200, Ht = 500, pw = Wt / 2, ph = Ht / 2;
  var svg = document.createElementNS(SVGNS, "svg");
  svg.setAttribute("viewBox", "0 0 " + Wt + " " + Ht);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "accuracy, training questions, steps and seconds per iteration");
  host.appendChild(svg);

  // 1. Accuracy with stderr bars.
  var top = 0.1;
  M.forEach(function (r) {
    var a = num(r.accuracy), e = num(r.accuracy_stderr) || 0;
    if (a !== null) top = Math.max(top, Math.min(1, a + e));
  });
  var sc = scale(Math.min(100, top * 100 * 1.08), false);
  if (sc.max > 100) sc = {step: 20, max: 100};
  var p = panel(svg, 0, 0, pw, ph, "held-out accuracy (%) \u00b1 stderr", sc);
  var pts = [];
  M.forEach(function (r, i) {
    var a = num(r.accuracy);
    if (a !== null) pts.push([p.x(i), p.y(100 * a)]);
  });
  if (pts.length > 1) sv(p.g, "polyline", {points: pts.map(function (q) { return q.join(","); }).join(" "), "class": "accline"});
  M.forEach(function (r, i) {
    var a = num(r.accuracy), e = num(r.accuracy_stderr);
    if (a === null) return;
    var cx = p.x(i);
    if (e !== null && e > 0) {
      var lo = p.y(Math.max(0, 100 * (a - e))), hi = p.y(Math.min(100, 100 * (a + e)));
      sv(p.g, "line", {x1: cx, x2: cx, y1: lo, y2: hi, "class": "err"});
      sv(p.g, "line", {x1: cx - 5, x2: cx + 5, y1: lo, y2: lo, "class": "err"});
      sv(p.g, "line", {x1: cx - 5, x2: cx + 5, y1: hi, y2: hi, "class": "err"});
    }
    var dot = sv(p.g, "circle", {cx: cx, cy: p.y(100 * a), r: 4.5, "class": "accpt"});
    sv(dot, "title", {}, "iteration " + r.iteration + ": " + pct(a) + (e !== null ? " \u00b1 " + (100 * e).toFixed(1) : "") +
       " on " + (r.eval_examples || "?") + " questions");
    sv(p.g, "text", {x: cx + 8, y: p.y(100 * a) - 6}, (100 * a).toFixed(1));
  });

  // 2. Training questions: kept, rationalized, not kept.
  var counts = [
    {name: "kept", color: "#2da44e", get: function (r) { return r.kept; }},
    {name: "rationalized", color: "#8250df", get: function (r) { return r.rationalized; }},
    {name: "not kept", color: "#d0d7de",
     get: function (r) { return Math.max(0, (r.sampled || 0) - (r.kept || 0) - (r.rationalized || 0)); }}
  ];
  var cmax = 1;
  M.forEach(function (r) { cmax = Math.max(cmax, Math.max(r.sampled || 0, (r.kept || 0) + (r.rationalized || 0))); });
  p = panel(svg, pw, 0, pw, ph, "training samples", scale(cmax * 1.1, true));
  stacked(p, counts, function (total, r) { return (r.kept || 0) + " + " + (r.rationalized || 0); });
  legend(p, counts.map(function (s) { return [s.name, s.color]; }));

  // 3. Training steps.
  var smax = 1;
  M.forEach(function (r) { smax = Math.max(smax, r.steps || 0); });
  p = panel(svg, 0, ph, pw, ph, "training steps", scale(smax * 1.1, true));
  stacked(p, [{name: "steps", color: "#bf8700", get: function (r) { return r.steps; }}],
          function (total) { return total; });

  // 4. Seconds per phase, stacked.
  var phases = DATA.phases || [];
  var series = phases.map(function (ph_, i) {
    return {name: ph_, color: PHASE_COLORS[ph_] || EXTRA_COLORS[i % EXTRA_COLORS.length],
            get: function (r) { return (r.seconds || {})[ph_]; }};
  });
  var tmax = 1;
  M.forEach(function (r) {
    var t = 0;
    phases.forEach(function (ph_) { t += num((r.seconds || {})[ph_]) || 0; });
    tmax = Math.max(tmax, t);
  });
  p = panel(svg, pw, ph, pw, ph, "seconds per phase", scale(tmax * 1.1, false));
  stacked(p, series, function (total) { return Math.round(total) + "s"; });
  legend(p, series.map(function (s) { return [s.name, s.color]; }));
}

// -- rationale browser -------------------------------------------------------------------------------------
var SETS = {train: "training samples", eval: "held-out evaluation"};
var PAGE = 200;
var state = {set: null, iteration: null, status: "all", query: "", selected: null, limit: PAGE};

function iterationsOf(set) {
  return Object.keys((DATA.samples || {})[set] || {}).map(Number).sort(function (a, b) { return a - b; });
}
function question(set, id) { return ((DATA.questions || {})[set] || {})[id] || ["", ""]; }
function entries() { return ((DATA.samples[state.set] || {})[String(state.iteration)]) || []; }
function haystack(entry) {
  var q = question(state.set, entry.id);
  var parts = [entry.id, q[0], q[1]];
  entry.a.forEach(function (a) { parts.push(a[0], a[1] === null ? "" : a[1]); });
  return parts.join("\n").toLowerCase();
}

function fillSelect(select, values, labelOf, current) {
  select.textContent = "";
  values.forEach(function (v) {
    var o = el("option", null, labelOf(v));
    o.value = String(v);
    if (String(v) === String(current)) o.selected = true;
    select.appendChild(o);
  });
}

function setupControls() {
  var sets = Object.keys(SETS).filter(function (s) { return iterationsOf(s).length; });
  state.set = sets.length ? sets[0] : "train";
  var its = iterationsOf(state.set);
  state.iteration = its.length ? its[its.length - 1] : null;
  var setSel = document.getElementById("set"), itSel = document.getElementById("iteration");
  fillSelect(setSel, sets, function (s) { return SETS[s]; }, state.set);
  fillSelect(itSel, its, itLabel, state.iteration);
  setSel.addEventListener("change", function () {
    state.set = setSel.value;
    var its2 = iterationsOf(state.set);
    if (its2.indexOf(state.iteration) < 0) state.iteration = its2.length ? its2[its2.length - 1] : null;
    fillSelect(itSel, its2, itLabel, state.iteration);
    state.selected = null; state.limit = PAGE;
    render(); renderDetail();
  });
  itSel.addEventListener("change", function () {
    state.iteration = Number(itSel.value); state.limit = PAGE;
    render(); renderDetail();
  });
  var search = document.getElementById("search");
  search.addEventListener("input", function () { state.query = search.value.trim().toLowerCase(); state.limit = PAGE; render(); });
}
function itLabel(n) { return n === 0 ? "0 (few-shot)" : String(n); }

function renderFilters(counts) {
  var host = document.getElementById("filters");
  host.textContent = "";
  ["all"].concat(STATUSES).forEach(function (s) {
    var b = el("button", null, s + " (" + (counts[s] || 0) + ")");
    b.type = "button";
    b.setAttribute("data-status", s);
    b.setAttribute("aria-pressed", state.status === s ? "true" : "false");
    b.addEventListener("click", function () { state.status = s; state.limit = PAGE; render(); });
    host.appendChild(b);
  });
}

function render() {
  var all = entries();
  var q = state.query;
  var matched = q ? all.filter(function (e) { return haystack(e).indexOf(q) >= 0; }) : all;
  var counts = {all: matched.length};
  STATUSES.forEach(function (s) { counts[s] = 0; });
  matched.forEach(function (e) { counts[e.s] = (counts[e.s] || 0) + 1; });
  renderFilters(counts);
  var shown = state.status === "all" ? matched : matched.filter(function (e) { return e.s === state.status; });
  document.getElementById("count").textContent = shown.length + " of " + all.length + " questions";
  var list = document.getElementById("list");
  list.textContent = "";
  if (!shown.length) list.appendChild(el("li", "none", all.length ? "nothing matches" : "no samples in this iteration"));
  shown.slice(0, state.limit).forEach(function (e) {
    var qq = question(state.set, e.id), first = e.a[0] || ["", null, false, false];
    var li = el("li", "row st-" + e.s);
    li.setAttribute("data-id", e.id);
    li.tabIndex = 0;
    if (e.id === state.selected) li.className += " selected";
    var head = el("div", "q");
    head.appendChild(el("span", "badge " + e.s, e.s));
    head.appendChild(document.createTextNode(qq[0] || e.id));
    li.appendChild(head);
    var last = e.a[e.a.length - 1];
    li.appendChild(el("div", "meta", e.id + " \u00b7 gold " + qq[1] + " \u00b7 predicted " +
                      (first[1] === null ? "no answer" : first[1]) +
                      (e.a.length > 1 ? " \u00b7 with hint " + (last[1] === null ? "no answer" : last[1]) : "") +
                      (first[4] ? " \u00b7 rejected: " + first[4] : "")));
    li.appendChild(el("div", "c", first[0]));
    var pick = function () { state.selected = e.id; render(); renderDetail(); };
    li.addEventListener("click", pick);
    li.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(); } });
    list.appendChild(li);
  });
  if (shown.length > state.limit) {
    var more = el("li", "more", "show " + Math.min(PAGE, shown.length - state.limit) + " more of " +
                  (shown.length - state.limit));
    more.addEventListener("click", function () { state.limit += PAGE; render(); });
    list.appendChild(more);
  }
}

function renderDetail() {
  var host = document.getElementById("detail");
  host.textContent = "";
  if (state.selected === null) {
    host.appendChild(el("p", "hint", "Click a question to see its rationale in every iteration."));
    return;
  }
  var id = state.selected, qq = question(state.set, id);
  host.appendChild(el("h3", null, qq[0] || id));
  host.appendChild(el("div", "meta", id + " \u00b7 gold answer " + qq[1] + " \u00b7 " + SETS[state.set]));
  var cols = el("div", "cols");
  iterationsOf(state.set).forEach(function (n) {
    var entry = null, rows = DATA.samples[state.set][String(n)] || [];
    for (var i = 0; i < rows.length; i++) if (rows[i].id === id) { entry = rows[i]; break; }
    var col = el("div", "col" + (n === state.iteration ? " current" : ""));
    col.setAttribute("data-iteration", String(n));
    var h = el("h4", null, "");
    h.appendChild(el("span", "badge " + (entry ? entry.s : "absent"), entry ? entry.s : "absent"));
    h.appendChild(document.createTextNode("iteration " + itLabel(n)));
    col.appendChild(h);
    if (!entry) col.appendChild(el("div", "label", "not sampled in this iteration"));
    (entry ? entry.a : []).forEach(function (a) {
      col.appendChild(el("div", "label", a[3] ? "with the answer as a hint" : (state.set === "eval" ? "answer" : "sampled")));
      col.appendChild(el("pre", null, a[0]));
      col.appendChild(el("div", "pred", "\u2192 " + (a[1] === null ? "no answer" : a[1]) + (a[2] ? " \u2714" : " \u2718") +
                         (a[4] ? " rejected by the verifier: " + a[4] : "")));
    });
    cols.appendChild(col);
  });
  host.appendChild(cols);
}

drawCharts();
setupControls();
render();
renderDetail();
document.body.setAttribute("data-ready", "1");
})();
"""
