// The rationale browser of report.html: pick a set and an iteration, filter by status, search, and click a
// question to see what it got in every iteration. Model text is only ever assigned to textContent.
(function () {
"use strict";
var DATA = JSON.parse(document.getElementById("star-data").textContent);
var STATUSES = ["correct", "rationalized", "failed"];

function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

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

setupControls();
render();
renderDetail();
document.body.setAttribute("data-ready", "1");
})();
