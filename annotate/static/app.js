"use strict";
// The annotate page: one scan at a time, boxes drawn on it, OCR, token chips labelled by key.
const $ = (id) => document.getElementById(id);
const S = { types: [], scans: [], index: 0, zoom: 1, boxes: { picture: null, caption: null },
  tokens: [], labels: [], suggested: null, cursor: 0, anchor: 0, ocr: { engine: null, lang: null, text: "" } };
const COLORS = ["PER", "LOC", "BUI", "MIS"];
const colorOf = (type) => { const i = S.types.indexOf(type);
  return `var(--${COLORS.includes(type) ? type : "t" + (i + 1)})`; };

// The server's session token, put into the page by the server: every request that changes
// something carries it (the server refuses one without it, so other sites cannot).
const TOKEN = document.querySelector("meta[name=annotate-token]").content;

function say(text, kind = "") { const m = $("message"); m.textContent = text; m.className = kind; }
async function api(path, body) {
  const r = await fetch(path, body === undefined ? {} : { method: "POST",
    headers: { "Content-Type": "application/json", "X-Annotate-Token": TOKEN }, body: JSON.stringify(body) });
  const data = await r.json().catch(() => ({ detail: r.statusText }));
  if (!r.ok) throw new Error(typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail));
  return data;
}

async function refresh() {
  const st = await api("/api/state");
  S.types = st.types; S.scans = st.scans;
  if (!$("engine").options.length) {
    for (const e of st.engines) { const o = new Option(e.name + (e.problem ? " (unavailable)" : ""), e.name);
      o.disabled = !!e.problem; o.title = e.problem || e.languages.join(", "); $("engine").add(o); }
    $("lang").value = st.lang;
  }
  if (st.warning) say(st.warning, "error");
  $("prelabels").textContent = st.prelabels ? "pre-labels: " + st.prelabels : "";
  const done = st.scans.filter((s) => s.status === "done").length, skipped = st.scans.filter((s) => s.status === "skipped").length;
  $("progress").textContent = `${done} done · ${skipped} skipped · ${st.scans.length - done - skipped} to do`;
  const list = $("scans"); list.innerHTML = "";
  for (const s of st.scans) {
    const li = document.createElement("li"); li.dataset.index = s.index;
    li.className = s.index === S.index ? "current" : "";
    const st_ = s.image ? s.status : "bad";
    li.innerHTML = `<span></span><span class="st ${st_}">${s.image ? s.status.replace("todo", "to do") : "not an image"}</span>`;
    li.firstChild.textContent = s.name;
    li.onclick = () => show(s.index);
    list.appendChild(li);
  }
  $("legend").innerHTML = "";
  S.types.forEach((t, i) => { const sp = document.createElement("span"); sp.style.background = colorOf(t);
    sp.textContent = `${i + 1} ${t}`; $("legend").appendChild(sp); });
  const o = document.createElement("span"); o.style.background = "#999"; o.textContent = "0 O"; $("legend").appendChild(o);
}

function keys() {
  const rows = [["1–" + S.types.length, "label the selection " + S.types.join(", ")], ["0", "O (no entity)"],
    ["← →", "move"], ["⇧ ← →", "extend the selection"], ["c / p", "draw caption / picture box"], ["o", "OCR the caption box"],
    ["t", "text → tokens"], ["Enter", "save, next scan"], ["s", "skip"], ["u", "undo last saved"],
    ["PgUp PgDn", "previous / next scan"], ["+ −", "zoom"], ["Esc", "leave the text box"]];
  $("keylist").innerHTML = rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
}

async function show(index) {
  if (index < 0 || index >= S.scans.length) return;
  S.index = index; S.boxes = { picture: null, caption: null }; S.suggested = null;
  setTokens([], []); $("text").value = ""; $("suggestnote").textContent = "";
  const scan = S.scans[index];
  $("title").textContent = `${index + 1}/${S.scans.length} · ${scan.name}`;
  say("");
  document.querySelectorAll("#scans li").forEach((li) => li.classList.toggle("current", +li.dataset.index === index));
  const img = $("scan");
  img.removeAttribute("src"); drawBoxes();
  try {
    const r = await fetch(`/api/scan/${index}/image`);
    if (!r.ok) { const d = await r.json(); throw new Error(d.detail); }
    img.src = URL.createObjectURL(await r.blob());
    await img.decode();
    fitZoom();
  } catch (err) { say(err.message, "error"); return; }
  const { item } = await api(`/api/scan/${index}/item`);
  if (item) {  // re-open a saved item for editing
    S.boxes = { picture: item.picture_box, caption: item.caption_box };
    $("text").value = item.ocr && item.ocr.text ? item.ocr.text : item.text.join(" ");
    S.ocr = item.ocr || S.ocr;
    setTokens(item.text, item.label); drawBoxes();
    say(`saved before (${item.saved}): edit and save again to replace it`, "ok");
  }
}

function fitZoom() {
  const img = $("scan"), vp = $("viewport");
  const fit = Math.min((vp.clientWidth - 30) / img.naturalWidth, (vp.clientHeight - 30) / img.naturalHeight);
  setZoom(Math.max(0.2, Math.min(fit, 3)));
}
function setZoom(z) {
  S.zoom = Math.max(0.1, Math.min(z, 8)); const img = $("scan");
  img.style.width = img.naturalWidth * S.zoom + "px"; img.style.height = img.naturalHeight * S.zoom + "px";
  $("zoom").textContent = Math.round(S.zoom * 100) + " %"; drawBoxes();
}
function place(el, box) {
  el.hidden = !box; if (!box) return;
  const [x0, y0, x1, y1] = box.map((v) => v * S.zoom);
  Object.assign(el.style, { left: x0 + "px", top: y0 + "px", width: x1 - x0 + "px", height: y1 - y0 + "px" });
}
function drawBoxes() { place($("pictureBox"), S.boxes.picture); place($("captionBox"), S.boxes.caption); }
const mode = () => document.querySelector("input[name=mode]:checked").value;

function pointer(ev) {
  const r = $("scan").getBoundingClientRect(), img = $("scan");
  const x = Math.max(0, Math.min(img.naturalWidth, (ev.clientX - r.left) / S.zoom));
  const y = Math.max(0, Math.min(img.naturalHeight, (ev.clientY - r.top) / S.zoom));
  return [x, y];
}
let drag = null;
$("canvas").addEventListener("mousedown", (ev) => { if (!$("scan").src) return; ev.preventDefault(); drag = pointer(ev); });
window.addEventListener("mousemove", (ev) => {
  if (!drag) return; const [x, y] = pointer(ev);
  const box = [Math.min(drag[0], x), Math.min(drag[1], y), Math.max(drag[0], x), Math.max(drag[1], y)];
  const el = $("drawing"); el.className = "box " + mode(); place(el, box);
});
window.addEventListener("mouseup", (ev) => {
  if (!drag) return; const [x, y] = pointer(ev); const start = drag; drag = null; $("drawing").hidden = true;
  const box = [Math.min(start[0], x), Math.min(start[1], y), Math.max(start[0], x), Math.max(start[1], y)].map(Math.round);
  if (box[2] - box[0] < 4 || box[3] - box[1] < 4) return;
  S.boxes[mode()] = box; drawBoxes();
  if (mode() === "caption") say("caption box set: press o (or OCR) to read it");
  else say("picture box set: the saved image is this crop");
});

async function runOcr() {
  $("busy").hidden = false; $("ocr").disabled = true;
  const body = { index: S.index, box: S.boxes.caption, engine: $("engine").value, lang: $("lang").value.trim() || "deu" };
  try {
    const r = await api("/api/ocr", body);
    S.ocr = { engine: r.engine, lang: r.lang, text: r.text };
    $("text").value = r.text;
    say(`read with ${r.engine} (${r.lang}) in ${r.seconds} s${S.boxes.caption ? "" : " — no caption box: the whole scan"}`, "ok");
    await runTokenize();
  } catch (err) { say("OCR failed: " + err.message, "error"); }
  finally { $("busy").hidden = true; $("ocr").disabled = false; }
}

async function runTokenize() {
  try {
    const r = await api("/api/tokenize", { index: S.index, text: $("text").value, picture_box: S.boxes.picture });
    S.suggested = r.suggested;
    setTokens(r.tokens, r.suggested ? [...r.suggested] : r.tokens.map(() => "O"));
    $("suggestnote").textContent = r.suggested ? "pre-labelled by the model: correct what is wrong" : "";
    $("chips").focus();
  } catch (err) { say(err.message, "error"); }
}

function setTokens(tokens, labels) { S.tokens = tokens; S.labels = labels; S.cursor = 0; S.anchor = 0; renderChips(); }
function renderChips() {
  const box = $("chips"); box.innerHTML = "";
  const [a, b] = [Math.min(S.anchor, S.cursor), Math.max(S.anchor, S.cursor)];
  S.tokens.forEach((tok, i) => {
    const c = document.createElement("span"); const tag = S.labels[i] || "O";
    c.className = "chip" + (i >= a && i <= b ? " sel" : "") + (i === S.cursor ? " cursor" : "") + (tag !== "O" ? " ent" : "")
      + (S.suggested && S.suggested[i] !== tag ? " changed" : "");
    if (tag !== "O") c.style.background = colorOf(tag.slice(2));
    c.textContent = tok; const t = document.createElement("span"); t.className = "tag"; t.textContent = tag; c.appendChild(t);
    c.dataset.i = i;
    c.onclick = (ev) => { S.cursor = i; if (!ev.shiftKey) S.anchor = i; renderChips(); box.focus(); };
    box.appendChild(c);
  });
}
// B-/I- are the tool's business: a span gets B- on its first token and I- after; a span cut
// in two by a relabel starts again with B-.
function label(type) {
  if (!S.tokens.length) return;
  const [a, b] = [Math.min(S.anchor, S.cursor), Math.max(S.anchor, S.cursor)];
  for (let i = a; i <= b; i++) S.labels[i] = type === "O" ? "O" : (i === a ? "B-" : "I-") + type;
  const next = b + 1;
  if (next < S.labels.length && S.labels[next].startsWith("I-") && (type === "O" || S.labels[next].slice(2) !== type))
    S.labels[next] = "B-" + S.labels[next].slice(2);
  S.anchor = S.cursor = Math.min(b + 1, S.tokens.length - 1); renderChips();
}

async function save() {
  if (!S.tokens.length) { say("nothing to save: read the caption (o) or type it, then make tokens (t)", "error"); return; }
  try {
    const r = await api("/api/save", { index: S.index, picture_box: S.boxes.picture, caption_box: S.boxes.caption,
      text: S.tokens, label: S.labels, ocr_text: $("text").value, engine: S.ocr.engine, lang: S.ocr.lang, suggested: S.suggested });
    const changed = r.item.suggestions ? ` · ${r.item.suggestions.changed} label(s) changed from the model's` : "";
    await refresh(); const next = nextTodo(); if (next !== null) await show(next);
    say(`saved ${r.item.source} (${r.done} items)${changed}`, "ok");
  } catch (err) { say("not saved: " + err.message, "error"); }
}
function nextTodo() {
  for (let k = 1; k <= S.scans.length; k++) { const i = (S.index + k) % S.scans.length;
    if (S.scans[i].status === "todo" && S.scans[i].image) return i; }
  return null;
}
async function skip() { await api("/api/skip", { index: S.index }); await refresh(); const n = nextTodo(); if (n !== null) show(n); }
async function undo() {
  const r = await api("/api/undo", {}); await refresh();
  if (r.undone) { const s = S.scans.find((x) => x.name === r.undone); if (s) await show(s.index); say(`undid ${r.undone}`, "ok"); }
  else say("nothing to undo");
}

document.addEventListener("keydown", (ev) => {
  if (ev.target === $("text") || ev.target === $("lang")) { if (ev.key === "Escape") ev.target.blur(); return; }
  const k = ev.key;
  if (/^[1-9]$/.test(k) && +k <= S.types.length) { label(S.types[+k - 1]); ev.preventDefault(); }
  else if (k === "0") { label("O"); ev.preventDefault(); }
  else if (k === "ArrowRight" || k === "ArrowLeft") {
    const d = k === "ArrowRight" ? 1 : -1; S.cursor = Math.max(0, Math.min(S.tokens.length - 1, S.cursor + d));
    if (!ev.shiftKey) S.anchor = S.cursor; renderChips(); ev.preventDefault();
  }
  else if (k === "Enter") { save(); ev.preventDefault(); }
  else if (k === "PageDown") { show(S.index + 1); ev.preventDefault(); }
  else if (k === "PageUp") { show(S.index - 1); ev.preventDefault(); }
  else if (k === "c" || k === "p") { document.querySelector(`input[value=${k === "c" ? "caption" : "picture"}]`).checked = true; }
  else if (k === "o") runOcr();
  else if (k === "t") runTokenize();
  else if (k === "s") skip();
  else if (k === "u") undo();
  else if (k === "+" || k === "=") setZoom(S.zoom * 1.25);
  else if (k === "-") setZoom(S.zoom / 1.25);
});
$("viewport").addEventListener("wheel", (ev) => { if (ev.ctrlKey) { ev.preventDefault(); setZoom(S.zoom * (ev.deltaY < 0 ? 1.1 : 1 / 1.1)); } }, { passive: false });
$("prev").onclick = () => show(S.index - 1); $("next").onclick = () => show(S.index + 1);
$("zoomin").onclick = () => setZoom(S.zoom * 1.25); $("zoomout").onclick = () => setZoom(S.zoom / 1.25);
$("ocr").onclick = runOcr; $("tokenize").onclick = runTokenize; $("save").onclick = save; $("skip").onclick = skip; $("undo").onclick = undo;
$("clearboxes").onclick = () => { S.boxes = { picture: null, caption: null }; drawBoxes(); };

(async () => { await refresh(); keys(); const first = S.scans.findIndex((s) => s.status === "todo" && s.image);
  await show(first >= 0 ? first : 0); })();
