// tlgan_jax editor page: plain JS, no build step. Every change sends the full state
// {z, amounts, lock, photo, layers} to POST /api/render; at most one render is in flight and the
// latest state is sent when it returns (slider drags never queue up stale requests).
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  face: $("face"), status: $("status"), rows: $("attributes"), undo: $("undo"),
  latency: $("latency"), photoPanel: $("photo-panel"), target: $("target"),
  quality: $("quality"), caption: $("face-caption"), identity: $("identity"),
};

let info = null;
// The state the server renders; `base` is the unedited face's scores (for the deltas).
// layers (W / W+ axes only): {attribute: "START:STOP" or a preset name}, the style inputs
// the attribute moves (layer-wise edits); an attribute not named moves all of them.
let state = { z: null, amounts: {}, lock: [], photo: null, layers: {} };
let baseScores = {};
let lastRender = null;          // {image, scores, z_edited}
let committed = null;           // last state pushed to the undo history
const history = [];
let inflight = false, pending = false;
let target = null;              // {image, quality} of an uploaded photo
const PADLOCK = '<svg width="11" height="12" viewBox="0 0 11 12" aria-hidden="true">' +
  '<rect x="1" y="5" width="9" height="7" rx="1.5" fill="currentColor"/>' +
  '<path d="M3 5V3.5a2.5 2.5 0 0 1 5 0V5" stroke="currentColor" stroke-width="1.4" ' +
  'fill="none"/></svg>';

// ------------------------------------------------------------------------ helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  node.append(...children);
  return node;
}

function snapshot() {
  return JSON.parse(JSON.stringify({ state, target }));
}

function setStatus(text, kind = "") {
  ui.status.textContent = text;
  ui.status.className = kind;
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) {
      return body.detail.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
    }
  } catch (e) { /* not JSON */ }
  return `HTTP ${resp.status}`;
}

async function api(path, body, isForm = false) {
  const opts = { method: "POST" };
  if (isForm) {
    opts.body = body;
  } else {
    opts.body = JSON.stringify(body);
    opts.headers = { "Content-Type": "application/json" };
  }
  const resp = await fetch(path, opts);
  if (!resp.ok) throw new Error(await errorText(resp));
  return resp.json();
}

function requestBody() {
  const amounts = {};
  for (const [k, v] of Object.entries(state.amounts)) if (v !== 0) amounts[k] = v;
  const body = { z: state.z, amounts, lock: state.lock };
  if (state.photo) body.photo = state.photo;
  if (Object.keys(state.layers).length) body.layers = state.layers;
  return body;
}

let binaryScore = {};           // score name -> binary (a logit: shown with its sign)

function fmtScore(name, value) {
  if (binaryScore[name]) return `${value >= 0 ? "+" : ""}${value.toFixed(2)}`;
  return value.toFixed(Math.abs(value) >= 10 ? 1 : 2);
}

// a score and its change from the unedited face
function scoreNodes(name, value) {
  const d = name in baseScores ? value - baseScores[name] : 0;
  const cls = Math.abs(d) < 0.005 ? "" : (d > 0 ? "up" : "down");
  return [fmtScore(name, value), el("span", { class: `delta ${cls}` },
    `${d >= 0 ? "+" : "−"}${Math.abs(d).toFixed(2)}`)];
}

// ------------------------------------------------------------------------ rendering
function scheduleRender() {
  if (inflight) { pending = true; return; }
  inflight = true;
  document.body.dataset.idle = "false";     // no render running or queued: "true" (tests)
  doRender();
}

async function doRender() {
  const t0 = performance.now();
  try {
    const r = await api("/api/render", requestBody());
    lastRender = r;
    ui.face.src = r.image;
    showScores(r.scores);
    showIdentity(r.identity);
    const rtt = performance.now() - t0;
    ui.latency.textContent = `last render: ${rtt.toFixed(0)} ms round trip, ` +
      `${r.ms.toFixed(1)} ms on the server`;
    if (ui.status.className === "error") setStatus("");   // a render worked again
    document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
  } catch (e) {
    setStatus(e.message, "error");
  } finally {
    inflight = false;
    if (pending) { pending = false; scheduleRender(); }
    document.body.dataset.idle = String(!inflight);
  }
}

// "identity: kept (distance 0.31 < 0.6)": the edit's face-descriptor distance (null: the
// editor has no descriptor, the line stays hidden)
function showIdentity(id) {
  ui.identity.hidden = !id;
  if (!id) return;
  const d = id.distance.toFixed(2), t = String(id.threshold);
  ui.identity.textContent = id.kept ? `identity: kept (distance ${d} < ${t})`
                                    : `identity: changed (distance ${d} ≥ ${t})`;
  ui.identity.className = id.kept ? "small" : "small warn";
}

function showScores(scores) {
  for (const a of info.attributes) {
    const cell = $(`score-${a.name}`);
    if (cell && a.name in scores) {
      cell.dataset.value = String(scores[a.name]);
      cell.replaceChildren(...scoreNodes(a.name, scores[a.name]));
    }
    // the independent judges: the same concept scored by nets that did not define the axis
    const judged = $(`judge-${a.name}`);
    if (!judged || !a.judges.length) continue;
    judged.replaceChildren(...a.judges.filter((j) => j.name in scores).map((j) => el("span", {
      class: "judge", "data-name": j.name, "data-value": String(scores[j.name]),
      title: j.score_meaning,
    }, el("span", { class: "muted" }, `${j.name} `), ...scoreNodes(j.name, scores[j.name]))));
  }
}

async function refreshBase() {
  // scores of the unedited face, for the deltas
  const body = { z: state.z };
  if (state.photo) body.photo = state.photo;
  baseScores = (await api("/api/score", body)).scores;
}

// ------------------------------------------------------------------------ controls
function hasJudges() {
  return info.attributes.some((a) => a.judges && a.judges.length);
}

const LAYER_TEXT = /^\s*-?\d{0,4}:-?\d{0,4}\s*$/;

// The style-layer choice of one attribute (W / W+ axes): a select of all / the presets /
// custom, and a START:STOP field shown for custom.
function layerCell(name) {
  const select = el("select", { id: `layers-${name}`, "aria-label": `${name} style layers`,
    title: "the style inputs this attribute's slider moves (layer-wise edit)" });
  select.append(el("option", { value: "" }, "all"));
  for (const [preset, idx] of Object.entries(info.layers.presets)) {
    select.append(el("option", { value: preset },
      `${preset} ${idx[0]}–${idx[idx.length - 1]}`));
  }
  select.append(el("option", { value: "custom" }, "custom…"));
  const text = el("input", { type: "text", id: `layers-text-${name}`, size: "5",
    placeholder: "0:4", "aria-label": `${name} style layers START:STOP`, hidden: "" });
  select.addEventListener("change", () => {
    text.hidden = select.value !== "custom";
    if (select.value === "custom") { text.focus(); return; }
    setLayers(name, select.value);
  });
  text.addEventListener("change", () => {
    if (!LAYER_TEXT.test(text.value)) {
      text.classList.add("invalid");
      setStatus(`${name}: style layers look like START:STOP, e.g. 2:6 ` +
        `(${info.layers.num_ws} inputs, numbered from 0)`, "error");
      return;
    }
    text.classList.remove("invalid");
    setLayers(name, text.value.trim());
  });
  return el("td", { class: "layers" }, select, text);
}

function setLayers(name, value) {
  if (value) state.layers[name] = value; else delete state.layers[name];
  commit();
  scheduleRender();
}

function buildRows() {
  ui.rows.innerHTML = "";
  const range = Math.min(5, info.limits.max_amount);
  for (const a of info.attributes) {
    // built with DOM calls (no innerHTML): attribute names come from the axes file
    const tr = el("tr", { id: `row-${a.name}` });
    tr.append(
      el("td", { class: "name" }, a.name),
      el("td", { class: "slider" }, el("input", {
        type: "range", id: `slider-${a.name}`, min: -range, max: range, step: "0.01",
        value: "0", "aria-label": `${a.name} amount`,
      })),
      el("td", { class: "amount", id: `amount-${a.name}` }, "0.00"),
      el("td", {
        class: "score", id: `score-${a.name}`,
        title: a.score_meaning || "no extractor scores this attribute",
      }, a.has_score ? "…" : "–"),
      el("td", {}, el("button", {
        type: "button", class: "lock", id: `lock-${a.name}`, "aria-pressed": "false",
        title: `lock ${a.name}: keep it while moving the others`,
      }, "unlocked")));
    if (hasJudges()) {
      tr.insertBefore(el("td", { class: "score judges", id: `judge-${a.name}` },
        a.judges.length ? "…" : "–"), tr.children[4]);
    }
    if (info.layers) tr.append(layerCell(a.name));
    ui.rows.appendChild(tr);
    const slider = tr.querySelector("input");
    slider.addEventListener("input", () => {
      state.amounts[a.name] = Number(slider.value);
      $(`amount-${a.name}`).textContent = Number(slider.value).toFixed(2);
      scheduleRender();
    });
    slider.addEventListener("change", commit);
    slider.addEventListener("dblclick", () => {
      slider.value = "0";
      slider.dispatchEvent(new Event("input"));
      commit();
    });
    tr.querySelector("button.lock").addEventListener("click", () => toggleLock(a.name));
  }
}

function syncControls() {
  for (const a of info.attributes) {
    const v = state.amounts[a.name] || 0;
    const slider = $(`slider-${a.name}`);
    slider.value = String(v);
    $(`amount-${a.name}`).textContent = v.toFixed(2);
    const locked = state.lock.includes(a.name);
    slider.disabled = locked;
    const btn = $(`lock-${a.name}`);
    btn.setAttribute("aria-pressed", String(locked));
    btn.innerHTML = locked ? `${PADLOCK} locked` : "unlocked";
    $(`row-${a.name}`).classList.toggle("locked", locked);
    if (info.layers) {
      const v = state.layers[a.name] || "";
      const select = $(`layers-${a.name}`), text = $(`layers-text-${a.name}`);
      const preset = v === "" || v in info.layers.presets;
      select.value = preset ? v : "custom";
      text.hidden = preset;
      if (!preset) text.value = v;
    }
  }
  ui.undo.disabled = history.length === 0;
  if (target) {
    ui.photoPanel.hidden = false;
    ui.target.src = target.image;
    ui.quality.textContent = target.quality;
    ui.caption.textContent = "reconstruction, edited";
  } else {
    ui.photoPanel.hidden = true;
    ui.caption.textContent = "edited face";
  }
}

function commit() {
  // push the previous committed state, remember the current one
  const now = snapshot();
  if (committed && JSON.stringify(committed) !== JSON.stringify(now)) {
    history.push(committed);
    if (history.length > 200) history.shift();
  }
  committed = now;
  ui.undo.disabled = history.length === 0;
}

function toggleLock(name) {
  const i = state.lock.indexOf(name);
  if (i >= 0) state.lock.splice(i, 1); else state.lock.push(name);
  // TL-GAN order: locked axes are orthogonalised in the axes' order
  const order = info.attributes.map((a) => a.name);
  state.lock.sort((a, b) => order.indexOf(a) - order.indexOf(b));
  syncControls();
  commit();
  scheduleRender();
}

async function setFace(z, photo, newTarget) {
  state = { z, amounts: {}, lock: state.lock.slice(), photo, layers: { ...state.layers } };
  target = newTarget;
  await refreshBase();
  syncControls();
  commit();
  scheduleRender();
}

async function randomFace(seed) {
  try {
    const r = await api("/api/random", Number.isInteger(seed) ? { seed } : {});
    await setFace(r.z, null, null);
    setStatus(`face seed ${r.seed} (link: ?seed=${r.seed})`);
  } catch (e) { setStatus(e.message, "error"); }
}

function reset() {
  state.amounts = {};
  state.lock = [];
  state.layers = {};
  syncControls();
  commit();
  scheduleRender();
}

async function undo() {
  if (!history.length) return;
  const prev = history.pop();
  const zChanged = JSON.stringify(prev.state.z) !== JSON.stringify(state.z) ||
    prev.state.photo !== state.photo;
  state = prev.state;
  target = prev.target;
  committed = snapshot();
  if (zChanged) {
    try { await refreshBase(); } catch (e) { setStatus(e.message, "error"); }
  }
  syncControls();
  scheduleRender();
}

function download(href, filename) {
  const a = document.createElement("a");
  a.href = href;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
}

function downloadPng() {
  if (lastRender) download(lastRender.image, "face.png");
}

function downloadLatent() {
  const data = {
    generator: info.generator.name, latent_space: info.generator.latent_space, z: state.z,
    amounts: state.amounts, lock: state.lock, layers: state.layers,
    z_edited: lastRender ? lastRender.z_edited : null,
    z_edited_space: lastRender ? lastRender.z_edited_space : null,
    refined_photo: Boolean(state.photo),
    note: "z_edited = z + sum of amounts along the (locked-orthogonalised) axes" +
      (Object.keys(state.layers).length ? ", each on its style layers only (a w+ latent)" : "") +
      (state.photo ? "; rendered with a generator refined to an uploaded photo (not included)" : ""),
  };
  const blob = new Blob([JSON.stringify(data, null, 1)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  download(url, "latent.json");
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function upload(file) {
  if (!file) return;
  if (file.size > info.limits.max_upload_bytes) {
    setStatus(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB; the limit is ` +
      `${(info.limits.max_upload_bytes / 1e6).toFixed(0)} MB`, "error");
    return;
  }
  const form = new FormData();
  form.append("file", file);
  form.append("refine", $("refine").checked ? "true" : "false");
  const t0 = performance.now();
  const stages = { z: "fitting the latent", refine: "refining the generator" };
  let progressText = "";
  const timer = setInterval(async () => {
    try {
      const p = await (await fetch("/api/progress")).json();
      if (p.busy && p.total) {
        progressText = `${stages[p.stage] || p.stage}: step ${p.done} of ${p.total}`;
      }
    } catch (e) { /* keep the last text */ }
    setStatus(`${file.name}: ${progressText || "preparing"} ` +
      `(${((performance.now() - t0) / 1000).toFixed(0)} s)`, "busy");
  }, 400);
  setStatus(`fitting ${file.name} …`, "busy");
  try {
    const r = await api("/api/invert", form, true);
    clearInterval(timer);
    await setFace(r.z, r.photo, {
      image: r.target,
      quality: `PSNR ${r.psnr.toFixed(1)} dB, SSIM ${r.ssim.toFixed(2)} (${r.framing})`,
    });
    setStatus(`fitted in ${r.seconds.toFixed(1)} s`);
  } catch (e) {
    clearInterval(timer);
    setStatus(`upload failed: ${e.message}`, "error");
  } finally {
    $("upload").value = "";
  }
}

// ------------------------------------------------------------------------ start
async function start() {
  try {
    const resp = await fetch("/api/info");
    info = await resp.json();
  } catch (e) {
    setStatus("cannot reach the editor server", "error");
    return;
  }
  $("generator").textContent =
    `${info.generator.name} · ${info.generator.resolution}×${info.generator.resolution}`;
  for (const a of info.attributes) {
    binaryScore[a.name] = a.binary;
    for (const j of a.judges || []) binaryScore[j.name] = j.binary;
  }
  if (hasJudges()) $("judges-head").hidden = false;
  if (info.layers) {
    $("layers-head").hidden = false;
    $("layers-help").hidden = false;
  }
  buildRows();
  $("random").addEventListener("click", () => randomFace());
  $("reset").addEventListener("click", reset);
  ui.undo.addEventListener("click", undo);
  $("download-png").addEventListener("click", downloadPng);
  $("download-latent").addEventListener("click", downloadLatent);
  $("upload").addEventListener("change", (ev) => upload(ev.target.files[0]));
  document.addEventListener("keydown", (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "z") { ev.preventDefault(); undo(); }
    else if (ev.key === "r" && ev.target.tagName !== "INPUT") randomFace();
  });
  // ?seed=N starts from the face of that seed (a shareable link); otherwise a random one
  const seed = Number.parseInt(new URLSearchParams(location.search).get("seed"), 10);
  await randomFace(Number.isInteger(seed) && seed >= 0 ? seed : undefined);
  document.body.dataset.ready = "true";
}

start();
