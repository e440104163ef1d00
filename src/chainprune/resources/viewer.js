// chainprune viewer: draws the traces embedded in this page. No network, no libraries.
// Every piece of data (token text, ids, file names) is inserted with textContent, never parsed as markup.
(function () {
  "use strict";

  const PAGE_SIZE = 50;
  const SNIPPET_CHARS = 90;
  const CATEGORY_COLORS = {
    SymbMath: "#1f77b4", MetaDisc: "#9467bd", CoRef: "#d62728",
    EntName: "#2ca02c", VerbalMath: "#ff7f0e", Grammar: "#8c8c8c",
  };
  const EXTRA_COLORS = ["#17becf", "#bcbd22", "#8c564b", "#e377c2", "#393b79", "#637939"];
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  const meta = readJson("viewer-index");
  const examples = meta.examples;
  const sources = meta.sources;
  const multi = sources.length > 1;
  const colors = categoryColors(meta.categories);

  const state = {
    filtered: examples.map((_, k) => k),
    page: 0,
    current: -1,
    columns: [],      // one per source: {trace, spans, ...} or {trace: null}
    reference: 0,     // the slider counts deletions of a chain this long (the longest shown)
    single: null,     // the one trace shown, if only one: then the slider counts its steps (a unit trace's are words or sentences)
    sliderMax: 0,
    keep: { num: 1, den: 1 },  // the keep fraction shown, exactly (a slider position or a trace's own key)
    keepKey: null,    // the `pruned` key picked with a button, if any
  };
  let searchable = null;  // lower-cased "id\ntext" per example, built on the first search

  function readJson(id) {
    return JSON.parse($(id).textContent);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function categoryColors(names) {
    let extra = 0;
    return names.map((name) => CATEGORY_COLORS[name] || EXTRA_COLORS[extra++ % EXTRA_COLORS.length]);
  }

  function fmt(x, digits) {
    return Number.isFinite(x) ? x.toFixed(digits) : "–";
  }

  // ---- the example list: search and pages ----

  function applyFilter(query) {
    const q = query.trim().toLowerCase();
    if (!q) {
      state.filtered = examples.map((_, k) => k);
    } else {
      if (!searchable) searchable = examples.map((e) => (e.id + "\n" + e.text).toLowerCase());
      state.filtered = [];
      for (let k = 0; k < searchable.length; k++) if (searchable[k].includes(q)) state.filtered.push(k);
    }
    const at = state.filtered.indexOf(state.current);
    state.page = at >= 0 ? Math.floor(at / PAGE_SIZE) : 0;
    renderList();
  }

  function renderList() {
    const pages = Math.max(1, Math.ceil(state.filtered.length / PAGE_SIZE));
    state.page = Math.min(Math.max(state.page, 0), pages - 1);
    const start = state.page * PAGE_SIZE;
    const items = state.filtered.slice(start, start + PAGE_SIZE).map((k) => {
      const e = examples[k];
      const button = el("button");
      button.type = "button";
      button.dataset.k = String(k);
      if (k === state.current) button.setAttribute("aria-current", "true");
      button.append(el("span", "ex-id", e.id), el("span", "ex-text", e.text.slice(0, SNIPPET_CHARS)));
      if (multi && e.in.length < sources.length) {
        button.append(el("span", "ex-missing", "only in " + e.in.map((i) => sources[i]).join(", ")));
      }
      button.addEventListener("click", () => selectExample(k));
      const li = el("li");
      li.append(button);
      return li;
    });
    $("example-list").replaceChildren(...items);
    const total = examples.length;
    $("list-status").textContent = state.filtered.length === total
      ? total + " example" + (total === 1 ? "" : "s")
      : state.filtered.length + " of " + total + " examples match";
    $("page-label").textContent = "page " + (state.page + 1) + " of " + pages;
    $("prev-page").disabled = state.page === 0;
    $("next-page").disabled = state.page >= pages - 1;
  }

  function stepExample(delta) {
    if (!state.filtered.length) return;
    const at = state.filtered.indexOf(state.current);
    const next = at < 0 ? 0 : Math.min(Math.max(at + delta, 0), state.filtered.length - 1);
    selectExample(state.filtered[next]);
  }

  // ---- one example: columns, slider, update ----

  function selectExample(k) {
    state.current = k;
    const data = readJson("ex-" + k);  // parsed only now, and not kept: the page holds one example at a time
    $("example-title").textContent = data.id;
    state.columns = data.traces.map((trace, i) => buildColumn(trace, i));
    $("columns").replaceChildren(...state.columns.map((c) => c.root));
    const present = state.columns.filter((c) => c.trace);
    state.reference = Math.max(0, ...present.map((c) => c.trace.n));
    state.single = present.length === 1 ? present[0].trace : null;
    state.sliderMax = sliderMax(present.map((c) => c.trace));
    const slider = $("slider");
    slider.max = String(state.sliderMax);
    buildKeepButtons(present.map((c) => c.trace));
    // Stay at the same keep fraction when moving between examples.
    const position = currentPosition();
    if (position > state.sliderMax) setSlider(state.sliderMax); else { slider.value = String(position); update(); }
    const at = state.filtered.indexOf(k);
    if (at >= 0) state.page = Math.floor(at / PAGE_SIZE);
    renderList();
    try {
      history.replaceState(null, "", "#" + encodeURIComponent(data.id));
    } catch (e) {
      // Some embedding contexts (about:blank, sandboxed frames) forbid it; the page works without.
    }
  }

  // Deletions a trace needs to reach keep fraction `keep`: n - floor(n*r), or, for one of the trace's own keep
  // fractions (`key`), the count it recorded (a baseline matched to student lengths may keep another number).
  function wantedDeletions(trace, keep, key) {
    if (trace.n === 0) return 0;
    if (key !== null && key !== undefined && Object.prototype.hasOwnProperty.call(trace.kept_at || {}, key)) {
      return trace.n - trace.kept_at[key];
    }
    return keep.den === 0 ? 0 : trace.n - Math.floor((trace.n * keep.num) / keep.den);
  }

  // Tokens a trace has deleted after `steps` of its steps: one per step, or, for a unit trace, whole words or
  // sentences (`ends`).
  function tokensAfter(trace, steps) {
    return trace.ends ? trace.ends[steps] : steps;
  }

  // Steps a trace makes at keep fraction `keep`: the fewest that delete the tokens it wants (all its steps at
  // most), so a unit trace is cut only where one of its words or sentences ends.
  function deletionsAt(trace, keep, key) {
    const wanted = wantedDeletions(trace, keep, key);
    if (!trace.ends) return Math.min(trace.deletions, wanted);
    let s = 0;
    while (s < trace.deletions && trace.ends[s] < wanted) s++;
    return s;
  }

  // Where the slider stands for the current keep fraction: a single trace's own step count, or the
  // deletions of the longest chain shown.
  function currentPosition() {
    if (state.single) return deletionsAt(state.single, state.keep, state.keepKey);
    return keepToPosition(state.keep);
  }

  function keepToPosition(keep) {
    const n = state.reference;
    return keep.den === 0 ? 0 : n - Math.floor((n * keep.num) / keep.den);
  }

  function positionToKeep(position) {
    const t = state.single;
    if (t) return { num: t.n - tokensAfter(t, Math.min(position, t.deletions)), den: t.n };
    return { num: state.reference - position, den: state.reference };
  }

  function sliderMax(traces) {
    // The first position at which the deepest-pruned trace has made all its deletions.
    let best = 0;
    for (const t of traces) {
      let s = 0;
      while (s < state.reference && deletionsAt(t, positionToKeep(s)) < t.deletions) s++;
      best = Math.max(best, s);
    }
    return best;
  }

  function parseKeep(key) {
    const m = /^(\d*)\.(\d+)$/.exec(key);
    if (m) return { num: Number(m[1] + m[2]), den: 10 ** m[2].length };
    const r = Number(key);
    return { num: Math.round(r * 1e9), den: 1e9 };
  }

  function buildKeepButtons(traces) {
    const keys = new Set(["1.0"]);
    for (const t of traces) for (const key of t.keeps) keys.add(key);
    const sorted = [...keys].sort((a, b) => Number(b) - Number(a));
    const marks = [];
    const buttons = sorted.map((key) => {
      const button = el("button", null, key);
      button.type = "button";
      button.dataset.keep = key;
      button.addEventListener("click", () => {
        state.keep = parseKeep(key);
        state.keepKey = key;
        $("slider").value = String(Math.min(currentPosition(), state.sliderMax));
        update();
      });
      const option = el("option");
      const single = traces.length === 1 ? traces[0] : null;
      option.value = String(single ? deletionsAt(single, parseKeep(key), key) : keepToPosition(parseKeep(key)));
      option.label = key;
      marks.push(option);
      return button;
    });
    $("keep-buttons").replaceChildren(...buttons);
    $("keep-marks").replaceChildren(...marks);
  }

  function setSlider(position) {
    const p = Math.min(Math.max(position, 0), state.sliderMax);
    $("slider").value = String(p);
    state.keep = positionToKeep(p);
    state.keepKey = null;
    update();
  }

  function buildColumn(trace, sourceIndex) {
    const root = el("section", "column");
    root.dataset.source = String(sourceIndex);
    root.append(el("h3", null, sources[sourceIndex]));
    if (!trace) {
      root.append(el("p", "note", "no trace with this id in this file"));
      return { root, trace: null };
    }
    const info = trace.info || {};
    const details = [];
    if (info.method) details.push(info.method);
    if (info.objective) details.push("objective " + info.objective);
    if (info.pruner) details.push("pruner " + info.pruner);
    if (info.engine) details.push("engine " + info.engine);
    if (info.mode) details.push("APPROXIMATE " + JSON.stringify(info.mode));
    if (trace.unit) details.push("deleted by " + trace.unit);
    details.push(trace.n + " reasoning tokens");
    root.append(el("div", "info", details.join(" · ")));
    const stats = el("div", "stats");
    const note = el("div", "note");
    const tokens = el("div", "tokens");
    const spans = trace.texts.map((text, i) => {
      const span = el("span", "tok", text);
      const step = trace.steps[i];
      let title = "position " + i + (step === null ? ", kept to the end"
        : ", deleted " + (trace.unit ? "with its " + trace.unit + " " : "") + "at step " + step);
      const cat = trace.categories ? trace.categories[i] : null;
      if (cat !== null && cat !== undefined) {
        span.classList.add("cat");
        span.style.setProperty("--cat", colors[cat]);
        title += ", " + meta.categories[cat];
      }
      span.title = title;
      return span;
    });
    tokens.append(...spans);
    const catStats = el("div", "info");
    const kept = el("p", "kept-text");
    root.append(stats, note, tokens, catStats, el("div", "section-label", "kept text"), kept);
    const chart = buildChart(trace);
    if (chart) {
      root.append(el("div", "section-label", "objective" + (info.objective ? " (" + info.objective + ")" : "")
        + " by " + (trace.unit ? trace.unit + " " : "") + "deletion step"), chart.svg);
    } else {
      root.append(el("div", "section-label", "no objective values in this trace"));
    }
    return { root, trace, spans, stats, note, kept, catStats, chart };
  }

  function buildChart(trace) {
    const values = trace.objective_values;
    if (!values || values.filter((v) => v !== null).length < 2) return null;
    const W = 340, H = 120, left = 48, right = 8, top = 8, bottom = 18;
    const finite = values.filter((v) => v !== null);
    const lo = Math.min(...finite), hi = Math.max(...finite);
    const last = values.length - 1;
    const x = (i) => left + ((W - left - right) * i) / Math.max(1, last);
    const y = (v) => top + ((H - top - bottom) * (hi - v)) / (hi - lo || 1);
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart", role: "img" });
    root.append(svg("line", { class: "axis", x1: left, y1: H - bottom, x2: W - right, y2: H - bottom }));
    root.append(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: H - bottom }));
    for (const key of trace.keeps) {
      const d = deletionsAt(trace, parseKeep(key), key);
      if (d > last) continue;
      root.append(svg("line", { class: "keep-tick", x1: x(d), y1: top, x2: x(d), y2: H - bottom }));
      const nearEnd = x(d) > W - right - 24;
      const label = svg("text", { x: x(d) + (nearEnd ? -2 : 2), y: top + 8, "text-anchor": nearEnd ? "end" : "start" });
      label.textContent = key;
      root.append(label);
    }
    let path = "", pen = false;
    values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      path += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
      pen = true;
    });
    root.append(svg("path", { class: "line", d: path }));
    const texts = [
      [fmt(hi, 1), left - 4, top + 8, "end"], [fmt(lo, 1), left - 4, H - bottom, "end"],
      ["0", left, H - 4, "start"], [String(last), W - right, H - 4, "end"], [(trace.unit ? trace.unit + " " : "") + "deletions", (left + W) / 2, H - 4, "middle"],
    ];
    for (const [content, tx, ty, anchor] of texts) {
      const t = svg("text", { x: tx, y: ty, "text-anchor": anchor });
      t.textContent = content;
      root.append(t);
    }
    const marker = svg("line", { class: "marker", y1: top, y2: H - bottom });
    const dot = svg("circle", { class: "dot", r: 3 });
    root.append(marker, dot);
    return { svg: root, x, y, values, marker, dot };
  }

  function update() {
    const position = Number($("slider").value);
    if (state.keepKey === null) state.keep = positionToKeep(position);
    for (const c of state.columns) if (c.trace) updateColumn(c);
    const n = state.reference;
    const r = state.keepKey !== null ? Number(state.keepKey) : state.keep.den ? state.keep.num / state.keep.den : 1;
    const unit = state.single && state.single.unit ? state.single.unit + " " : "";
    $("slider-label").textContent = multi
      ? "keep " + fmt(r, 3) + (state.keepKey !== null ? "" : " (" + (n - position) + " of " + n + " tokens of the longest)")
      : position + " of " + state.sliderMax + " " + unit + "deletions · keep " + fmt(r, 3);
    for (const button of $("keep-buttons").children) {
      button.setAttribute("aria-pressed", String(button.dataset.keep === state.keepKey));
    }
  }

  function updateColumn(c) {
    const t = c.trace;
    const d = deletionsAt(t, state.keep, state.keepKey);
    const keptTexts = [];
    const catKept = new Map(), catTotal = new Map();
    for (let i = 0; i < t.n; i++) {
      const step = t.steps[i];
      const deleted = step !== null && step <= d;
      c.spans[i].classList.toggle("del", deleted);
      c.spans[i].classList.toggle("just", d > 0 && step === d);
      if (!deleted) keptTexts.push(t.texts[i]);
      const cat = t.categories ? t.categories[i] : null;
      if (cat !== null && cat !== undefined) {
        catTotal.set(cat, (catTotal.get(cat) || 0) + 1);
        if (!deleted) catKept.set(cat, (catKept.get(cat) || 0) + 1);
      }
    }
    c.kept.textContent = keptTexts.join("");
    c.root.dataset.deletions = String(d);
    const gone = tokensAfter(t, d), last = tokensAfter(t, t.deletions);
    const unit = t.unit ? t.unit + " " : "";
    const value = t.objective_values && d < t.objective_values.length ? t.objective_values[d] : null;
    c.stats.textContent = "kept " + (t.n - gone) + " of " + t.n + " tokens (keep " + fmt(t.n ? (t.n - gone) / t.n : 1, 3) + ") · "
      + unit + "deletion " + d + " of " + t.deletions + (value !== null ? " · objective " + fmt(value, 2) : "");
    c.note.textContent = wantedDeletions(t, state.keep, state.keepKey) > last
      ? "this trace stops after " + t.deletions + " " + unit + "deletions (keep " + fmt((t.n - last) / t.n, 3) + ")" : "";
    c.catStats.textContent = [...catTotal.keys()].sort((a, b) => a - b)
      .map((cat) => meta.categories[cat] + " " + (catKept.get(cat) || 0) + "/" + catTotal.get(cat)).join(" · ");
    if (c.chart) {
      const ch = c.chart;
      const at = Math.min(d, ch.values.length - 1);
      for (const k of ["x1", "x2"]) ch.marker.setAttribute(k, String(ch.x(at)));
      ch.dot.setAttribute("cx", String(ch.x(at)));
      const v = ch.values[at];
      ch.dot.setAttribute("cy", String(v === null ? -10 : ch.y(v)));
    }
  }

  function renderLegend() {
    const items = meta.categories.map((name, i) => {
      const item = el("span", "legend-item");
      const swatch = el("span", "swatch");
      swatch.style.background = colors[i];
      item.append(swatch, el("span", null, name));
      return item;
    });
    if (items.length) items.unshift(el("span", null, "token categories:"));
    $("legend").replaceChildren(...items);
  }

  // ---- wiring ----

  const search = $("search");
  search.addEventListener("input", () => applyFilter(search.value));
  $("prev-page").addEventListener("click", () => { state.page--; renderList(); });
  $("next-page").addEventListener("click", () => { state.page++; renderList(); });
  $("slider").addEventListener("input", () => { state.keepKey = null; update(); });
  $("hide-deleted").addEventListener("change", (ev) => $("columns").classList.toggle("hide-deleted", ev.target.checked));
  document.addEventListener("keydown", (ev) => {
    if (ev.target === search) {
      if (ev.key === "Enter" && state.filtered.length) {
        selectExample(state.filtered[0]);
        search.blur();  // so the arrow keys move the slider again
        ev.preventDefault();
      }
      if (ev.key === "Escape") search.blur();
      return;
    }
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const position = Number($("slider").value);
    switch (ev.key) {
      case "ArrowRight": setSlider(position + (ev.shiftKey ? 10 : 1)); break;
      case "ArrowLeft": setSlider(position - (ev.shiftKey ? 10 : 1)); break;
      case "Home": setSlider(0); break;
      case "End": setSlider(state.sliderMax); break;
      case "ArrowDown": stepExample(1); break;
      case "ArrowUp": stepExample(-1); break;
      case "/": search.focus(); break;
      default: return;
    }
    ev.preventDefault();  // also stops the focused slider from moving a second time
  });

  $("summary").textContent = examples.length + " example" + (examples.length === 1 ? "" : "s") + " · "
    + sources.join(" vs ");
  renderLegend();
  applyFilter("");
  if (examples.length) {
    let wanted = "";
    try { wanted = decodeURIComponent(location.hash.slice(1)); } catch (e) { /* a malformed hash: show the first */ }
    const k = examples.findIndex((e) => e.id === wanted);
    selectExample(k >= 0 ? k : 0);
  }
})();
