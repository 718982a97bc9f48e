// The Agora dashboard: one snapshot (/dashboard/api/overview) when the page opens, then live
// events (/dashboard/events, server-sent). No framework, no build step, nothing fetched from
// elsewhere. Amounts arrive as strings of base units (10^9 per AGR) and are shown in AGR.
"use strict";

const UNITS = 1000000000n;
const $ = (sel) => document.querySelector(sel);
const state = {
  models: new Map(),      // sha256 -> name
  providers: new Map(),   // address -> row data
  requests: 0,
  paid: 0n,
  verdicts: new Map(),    // provider -> {pass, fail}
  blocks: [],             // recent [height, timestamp ms]
  seenRequests: new Set(),
  seenVerdicts: new Set(),
  seenBlocks: new Set(),
  channels: new Map(),    // id -> {provider, deposit, spent, acked}
};

function agr(units) {
  const v = BigInt(units || "0");
  const int = v / UNITS;
  const frac = (v % UNITS).toString().padStart(9, "0").replace(/0+$/, "");
  return frac ? `${int}.${frac}` : `${int}`;
}
const short = (s) => (s && s.length > 14 ? `${s.slice(0, 8)}…${s.slice(-4)}` : s || "");
const time = (ms) => new Date(ms).toLocaleTimeString();
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
function row(cells, attrs = {}) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(typeof c === "string" || typeof c === "number" ? cell(String(c)) : c);
  for (const [k, v] of Object.entries(attrs)) tr.setAttribute(k, v);
  return tr;
}
function prepend(tableId, tr, max = 50) {
  const body = $(`#${tableId} tbody`);
  body.insertBefore(tr, body.firstChild);
  while (body.children.length > max) body.removeChild(body.lastChild);
}

// ---- the snapshot ----

async function loadOverview() {
  const r = await fetch("/dashboard/api/overview");
  if (!r.ok) throw new Error(`overview: HTTP ${r.status}`);
  const o = await r.json();
  if (o.chain) {
    $("#chain-id").textContent = o.chain.chain_id;
    $("#height").textContent = o.chain.height;
    const s = o.chain.supply;
    $("#supply").textContent = agr((BigInt(s.genesis) + BigInt(s.minted) - BigInt(s.burned)).toString());
  }
  $("#validator-count").textContent = o.validators.length;
  const vb = $("#validators tbody");
  vb.replaceChildren(...o.validators.map((v) => row([short(v.address), agr(v.stake)])));
  state.models.clear();
  for (const m of o.models) state.models.set(m.sha256, m.name);
  fillModels(o.models);
  state.providers.clear();
  for (const p of o.providers) state.providers.set(p.address, p);
  renderProviders();
  state.channels.clear();
  for (const c of o.channels) state.channels.set(c.id, c);
  renderChannels();
  $("#requests tbody").replaceChildren();
  $("#verdicts tbody").replaceChildren();
  $("#blocks tbody").replaceChildren();
  state.requests = 0;
  state.paid = 0n;
  state.verdicts.clear();
  state.seenRequests.clear();
  state.seenVerdicts.clear();
  state.seenBlocks.clear();
  // The snapshot's counters already include these: list them without counting them again.
  for (const e of o.requests) onRequest(e, true);
  for (const e of o.verdicts) onVerdict(e);
  for (const e of o.blocks) onBlock(e);
}

function renderChannels() {
  $("#channels tbody").replaceChildren(...[...state.channels.entries()].map(([id, c]) =>
    row([short(id), short(c.provider), c.deposit ? agr(c.deposit) : "-", agr(c.spent), c.acked ? agr(c.acked) : "-"])));
}

function fillModels(models) {
  const sel = $("#model");
  const was = sel.value;
  sel.replaceChildren(...models.map((m) => {
    const opt = document.createElement("option");
    opt.value = m.name;
    opt.textContent = `${m.name} (${m.kind})`;
    return opt;
  }));
  if (was) sel.value = was;
}

function renderProviders() {
  const rows = [...state.providers.values()].map((p) => {
    const prices = Object.entries(p.prices).map(([sha, pr]) =>
      `${state.models.get(sha) || short(sha)}: ${agr(pr.input_per_million)}, ${agr(pr.output_per_million)}`).join("; ");
    const v = state.verdicts.get(p.address) || { pass: 0, fail: 0 };
    const load = p.load_permille === undefined ? "-" : `${(p.load_permille / 10).toFixed(0)}%`;
    const served = `${p.successes || 0} ok, ${p.failures || 0} failed`;
    const tps = p.tokens_per_sec ? p.tokens_per_sec.toFixed(1) : "-";
    const status = p.on_probation ? cell("probation", "bad") : cell("active", "good");
    return row([short(p.address), prices, agr(p.stake), load, served, tps, `${v.pass} pass, ${v.fail} fail`, status],
      { "data-address": p.address });
  });
  $("#providers tbody").replaceChildren(...rows);
  $("#provider-count").textContent = state.providers.size;
}

// ---- markets ----

const COLORS = ["#2f5bd3", "#1a7f37", "#b42318", "#b7791f", "#7c3aed", "#0e7490", "#be185d", "#4b5563"];
let epochBlocks = 0;

// A line chart of `series` ([{name, values}]) over `labels`, as an SVG element.
function chart(title, labels, series, fmt) {
  const W = 460, H = 150, L = 56, B = 20, T = 18;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("class", "chart");
  const text = (x, y, t, anchor = "start") => {
    const e = document.createElementNS(ns, "text");
    e.setAttribute("x", x); e.setAttribute("y", y); e.setAttribute("text-anchor", anchor);
    e.textContent = t; svg.appendChild(e);
  };
  text(L, 12, title);
  const max = Math.max(1e-12, ...series.flatMap((s) => s.values));
  text(L - 4, T + 4, fmt(max), "end");
  text(L - 4, H - B, "0", "end");
  if (labels.length) {
    text(L, H - 4, `epoch ${labels[0]}`);
    text(W - 4, H - 4, `epoch ${labels[labels.length - 1]}`, "end");
  }
  const x = (i) => L + (labels.length < 2 ? (W - L) / 2 : (i * (W - L - 8)) / (labels.length - 1));
  const y = (v) => H - B - ((H - B - T) * v) / max;
  series.forEach((s, k) => {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLORS[k % COLORS.length]);
    line.setAttribute("stroke-width", "2");
    line.setAttribute("points", s.values.map((v, i) => `${x(i)},${y(v)}`).join(" "));
    svg.appendChild(line);
    for (const [i, v] of s.values.entries()) {
      const dot = document.createElementNS(ns, "circle");
      dot.setAttribute("cx", x(i)); dot.setAttribute("cy", y(v)); dot.setAttribute("r", 2.5);
      dot.setAttribute("fill", COLORS[k % COLORS.length]);
      svg.appendChild(dot);
    }
  });
  return svg;
}

function legend(names) {
  const d = document.createElement("div");
  d.className = "legend";
  names.forEach((n, k) => {
    const s = document.createElement("span");
    const i = document.createElement("i");
    i.style.background = COLORS[k % COLORS.length];
    s.append(i, n);
    d.appendChild(s);
  });
  return d;
}

async function loadMarkets() {
  const r = await fetch("/dashboard/api/markets");
  if (!r.ok) return;
  const m = await r.json();
  epochBlocks = m.epoch_blocks;
  const box = $("#markets");
  if (!m.markets.length) { box.replaceChildren(Object.assign(document.createElement("p"), { className: "muted", textContent: "no market yet" })); return; }
  box.replaceChildren(...m.markets.map(renderMarket));
}

function renderMarket(mk) {
  const div = document.createElement("div");
  div.className = "market";
  div.dataset.market = mk.name;
  const h = document.createElement("h3");
  h.textContent = `${mk.name}: ${mk.members.length} members, ${mk.epochs_run} epochs run, usage this epoch ${agr(mk.usage)} AGR`;
  div.appendChild(h);
  const labels = mk.epochs.map((e) => e.epoch);
  const providers = [...new Set(mk.epochs.flatMap((e) => e.providers.map((p) => p.provider)))];
  const charts = document.createElement("div");
  charts.className = "charts";
  const toAgr = (u) => Number(BigInt(u) * 1000000n / UNITS) / 1e6;
  charts.appendChild(chart("emission per epoch (AGR)", labels, [
    { name: "emission", values: mk.epochs.map((e) => toAgr(e.emission)) },
    { name: "usage", values: mk.epochs.map((e) => toAgr(e.usage)) },
  ], (v) => v.toFixed(3)));
  charts.appendChild(chart("incentive per provider (%)", labels, providers.map((p) => ({
    name: p,
    values: mk.epochs.map((e) => { const l = e.providers.find((x) => x.provider === p); return l ? l.incentive_ppm / 1e4 : 0; }),
  })), (v) => `${v.toFixed(0)}%`));
  charts.appendChild(chart("paid per provider (AGR)", labels, providers.map((p) => ({
    name: p,
    values: mk.epochs.map((e) => { const l = e.providers.find((x) => x.provider === p); return l ? toAgr(l.paid) : 0; }),
  })), (v) => v.toFixed(3)));
  div.appendChild(charts);
  const legends = document.createElement("div");
  legends.className = "charts";
  legends.append(legend(["emission", "usage"]), legend(providers.map(short)));
  div.appendChild(legends);
  const last = mk.epochs[mk.epochs.length - 1];
  const t = document.createElement("table");
  t.innerHTML = "<thead><tr><th>member</th><th>joined at</th><th>incentive (last epoch)</th><th>paid (last epoch, AGR)</th><th>why nothing</th></tr></thead><tbody></tbody>";
  for (const mem of mk.members) {
    const l = last ? last.providers.find((p) => p.provider === mem.provider) : null;
    t.tBodies[0].appendChild(row([short(mem.provider), mem.joined_at, `${(mem.incentive_ppm / 1e4).toFixed(1)}%`,
      l ? agr(l.paid) : "-", l && l.reason ? l.reason : ""], { "data-member": mem.provider }));
  }
  div.appendChild(t);
  if (last && last.validators.length) {
    const v = document.createElement("table");
    v.innerHTML = "<thead><tr><th>validator</th><th>weights (last epoch)</th><th>trust</th><th>paid (AGR)</th></tr></thead><tbody></tbody>";
    for (const val of last.validators) {
      const w = (val.weights || []).map((x) => `${short(x.provider)} ${(x.weight_ppm / 1e4).toFixed(0)}%`).join(", ");
      v.tBodies[0].appendChild(row([short(val.validator), w || "-", `${(val.validator_trust_ppm / 1e4).toFixed(0)}%`, agr(val.paid)]));
    }
    div.appendChild(v);
  }
  return div;
}

// ---- live events ----

function onRequest(e, inSnapshot = false) {
  if (state.seenRequests.has(e.request_id)) return;
  state.seenRequests.add(e.request_id);
  state.requests += 1;
  state.paid += BigInt(e.charged);
  $("#request-count").textContent = state.requests;
  $("#paid-total").textContent = agr(state.paid.toString());
  const seg = e.segments;
  const providers = seg.map((s) => short(s.provider)).join(" → ") || "-";
  const receipt = seg.map((s) => (s.receipt_id ? `${short(s.receipt_id)}${s.receipt_ok ? " ✓" : " ✗"}` : "none")).join(", ") || "-";
  const proof = seg.map((s) => (s.proof_bytes ? `${s.proof_bytes} B` : "none")).join(", ") || "-";
  const result = e.error ? cell(e.error, "bad") : cell(e.finish_reason || "ok", "good");
  prepend("requests", row([time(e.at_ms), short(e.request_id), state.models.get(e.model) || short(e.model), providers,
    `${e.prompt_tokens} + ${e.completion_tokens}`, agr(e.charged), receipt, proof, result],
  { "data-request": e.request_id, "data-provider": seg.length ? seg[seg.length - 1].provider : "" }));
  // The provider's served count moves with each request it finished.
  for (const s of inSnapshot ? [] : seg) {
    const p = state.providers.get(s.provider);
    if (p) {
      if (e.error) p.failures = (p.failures || 0) + 1; else p.successes = (p.successes || 0) + 1;
    }
    // What this gateway signed for on the channel moves by what the segment paid.
    if (s.channel) {
      const c = state.channels.get(s.channel) || { provider: s.provider, spent: "0" };
      c.spent = (BigInt(c.spent) + BigInt(s.charged)).toString();
      state.channels.set(s.channel, c);
    }
  }
  if (!inSnapshot) {
    renderProviders();
    renderChannels();
  }
}

function onVerdict(e) {
  const key = `${e.receipt_id}/${e.auditor}`;
  if (state.seenVerdicts.has(key)) return;
  state.seenVerdicts.add(key);
  const v = state.verdicts.get(e.provider) || { pass: 0, fail: 0 };
  if (e.failed) v.fail += 1; else v.pass += 1;
  state.verdicts.set(e.provider, v);
  prepend("verdicts", row([time(e.at_ms), short(e.receipt_id), short(e.provider), short(e.auditor),
    e.failed ? cell("FAILED", "bad") : cell("passed", "good")]));
  renderProviders();
}

function onBlock(e) {
  if (state.seenBlocks.has(e.height)) return;
  state.seenBlocks.add(e.height);
  $("#height").textContent = e.height;
  // Block time from consecutive blocks only (a page opened late has a gap in its history).
  state.blocks.push([e.height, e.timestamp_ms]);
  if (state.blocks.length > 20) state.blocks.shift();
  const gaps = state.blocks.slice(1).map(([h, t], i) => [h - state.blocks[i][0], t - state.blocks[i][1]])
    .filter(([dh]) => dh === 1).map(([, dt]) => dt);
  if (gaps.length) {
    $("#block-time").textContent = `${(gaps.reduce((a, b) => a + b, 0) / gaps.length / 1000).toFixed(2)} s`;
  }
  const slashed = e.slashed.length ? cell(e.slashed.map(short).join(", "), "bad") : cell("");
  prepend("blocks", row([e.height, time(e.timestamp_ms), e.txs, slashed]), 20);
  // A slash moves a stake and a probation: take a fresh snapshot.
  if (e.slashed.length) loadOverview().catch(console.error);
  // An incentive epoch ended with this block (epochs end at k * epoch_blocks - 1).
  if (epochBlocks && (e.height + 1) % epochBlocks === 0) loadMarkets().catch(console.error);
}

function onProviders(e) {
  const old = state.providers;
  state.providers = new Map();
  for (const p of e.providers) {
    // Keep how it served this gateway (the snapshot's figures, moved by request events).
    const was = old.get(p.address) || {};
    state.providers.set(p.address, { ...was, ...p });
  }
  renderProviders();
}

function connect() {
  const es = new EventSource("/dashboard/events");
  const live = $("#live");
  es.onopen = () => { live.textContent = "live"; live.className = "pill on"; };
  es.onerror = () => { live.textContent = "reconnecting"; live.className = "pill off"; };
  const on = (name, f) => es.addEventListener(name, (m) => f(JSON.parse(m.data)));
  on("request", onRequest);
  on("verdict", onVerdict);
  on("block", onBlock);
  on("providers", onProviders);
  on("lagged", () => loadOverview().catch(console.error));
}

// ---- playground ----

function apiKey() { return $("#key").value.trim(); }

function bubble(who, text) {
  const d = document.createElement("div");
  d.className = `msg ${who}`;
  d.textContent = text;
  $("#conversation").appendChild(d);
  return d;
}

const turns = [];

async function send() {
  const prompt = $("#prompt").value.trim();
  if (!prompt) return;
  $("#prompt").value = "";
  $("#send").disabled = true;
  turns.push({ role: "user", content: prompt });
  bubble("user", prompt);
  const out = bubble("assistant", "");
  out.id = "answer";
  document.querySelectorAll(".msg.assistant").forEach((m) => { if (m !== out) m.removeAttribute("id"); });
  let text = "";
  let summary = null;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${apiKey()}` },
      body: JSON.stringify({ model: $("#model").value, messages: turns, stream: true,
        max_tokens: Number($("#max-tokens").value) || 64 }),
    });
    if (!r.ok) {
      const err = await r.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || `HTTP ${r.status}`);
    }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        for (const line of frame.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          for (const c of chunk.choices || []) {
            if (c.delta && c.delta.content) { text += c.delta.content; out.textContent = text; }
            // Agora's summary (who served, what was paid, receipt and proof) rides on the
            // choice's last chunk; stock SDKs ignore it.
            if (c.agora) summary = c.agora;
          }
        }
      }
    }
    turns.push({ role: "assistant", content: text });
    out.classList.add("done");
    showReceipt(summary);
  } catch (e) {
    out.textContent = `error: ${e.message}`;
    out.classList.add("error");
    turns.pop();
  } finally {
    $("#send").disabled = false;
  }
}

function showReceipt(summary) {
  const box = $("#receipt");
  box.className = "";
  if (!summary) { box.textContent = "no receipt came with this answer"; return; }
  const parts = [`request ${summary.request_id}, paid ${agr(summary.charged)} AGR`];
  for (const s of summary.segments) {
    const r = s.receipt ? s.receipt.receipt : null;
    parts.push(`provider ${s.provider}: ${s.prompt_tokens} prompt + ${s.completion_tokens} completion tokens, ` +
      `${agr(s.charged)} AGR, receipt ${s.receipt_ok ? "verified" : "NOT verified"}` +
      (s.proof ? `, proof ${s.proof.length / 2} bytes` : ", no proof"));
    if (r) parts.push(JSON.stringify(r, null, 1));
  }
  const pre = document.createElement("pre");
  pre.id = "receipt-detail";
  pre.textContent = parts.join("\n");
  box.replaceChildren(pre);
}

// ---- wallet ----

async function loadWallet() {
  const body = $("#wallet tbody");
  const r = await fetch("/dashboard/api/me", { headers: { Authorization: `Bearer ${apiKey()}` } });
  const w = await r.json();
  if (!r.ok) { body.replaceChildren(row(["error", (w.error && w.error.message) || `HTTP ${r.status}`])); return; }
  body.replaceChildren(
    row(["name", w.name]), row(["account", w.account]),
    row(["credit at this gateway (AGR)", agr(w.credit)]), row(["spent (AGR)", agr(w.spent)]),
    row(["ledger balance (AGR)", w.balance === null ? "unknown" : agr(w.balance)]),
    row(["nonce", w.nonce === null ? "unknown" : w.nonce]),
    ...(w.per_request_cap === null ? [] : [row(["per-request cap (AGR)", agr(w.per_request_cap)])]),
    ...(w.expires_at === null ? [] : [row(["expires", new Date(w.expires_at * 1000).toISOString()])]));
  if (!$("#spend-address").value) $("#spend-address").value = w.gateway_account;
}

async function loadSpend() {
  const body = $("#spend tbody");
  const address = $("#spend-address").value.trim();
  const r = await fetch(`/dashboard/api/spend/${encodeURIComponent(address)}`);
  const v = await r.json();
  if (!r.ok) { body.replaceChildren(row(["error", (v.error && v.error.message) || `HTTP ${r.status}`])); return; }
  body.replaceChildren(
    row(["paid to providers (AGR)", agr(v.redeemed)]), row(["unspent deposits (AGR)", agr(v.unspent)]),
    row(["channels", v.channel_count]), row(["at height", v.height]));
}

// ---- tabs and start ----

function showTab() {
  const name = (location.hash.replace(/^#/, "").split("&")[0] || "overview");
  const tab = ["overview", "playground", "wallet"].includes(name) ? name : "overview";
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== `tab-${tab}`;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.tab === tab);
  if (tab === "wallet") loadWallet().catch(console.error);
}

function takeKeyFromUrl() {
  // `agora dev` prints the dashboard's URL with the dev key in the fragment (never sent to a
  // server); it is kept in this browser's storage and removed from the address bar.
  const m = location.hash.match(/key=([^&]+)/);
  if (m) {
    localStorage.setItem("agora-key", decodeURIComponent(m[1]));
    window.history.replaceState(null, "", location.pathname + "#overview");
  }
  $("#key").value = localStorage.getItem("agora-key") || "";
  $("#key").addEventListener("change", () => localStorage.setItem("agora-key", apiKey()));
}

takeKeyFromUrl();
window.addEventListener("hashchange", showTab);
showTab();
$("#send").addEventListener("click", send);
$("#prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); } });
$("#wallet-refresh").addEventListener("click", () => loadWallet().catch(console.error));
$("#spend-show").addEventListener("click", () => loadSpend().catch(console.error));
loadOverview().catch(console.error).finally(connect);
loadMarkets().catch(console.error);
