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
  blocks: [],             // recent block timestamps (ms)
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
  state.blocks.push(e.timestamp_ms);
  if (state.blocks.length > 20) state.blocks.shift();
  if (state.blocks.length > 1) {
    const span = state.blocks[state.blocks.length - 1] - state.blocks[0];
    $("#block-time").textContent = `${(span / (state.blocks.length - 1) / 1000).toFixed(2)} s`;
  }
  const slashed = e.slashed.length ? cell(e.slashed.map(short).join(", "), "bad") : cell("");
  prepend("blocks", row([e.height, time(e.timestamp_ms), e.txs, slashed]), 20);
  // A slash moves a stake and a probation: take a fresh snapshot.
  if (e.slashed.length) loadOverview().catch(console.error);
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
    row(["nonce", w.nonce === null ? "unknown" : w.nonce]));
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
loadOverview().catch(console.error).finally(connect);
