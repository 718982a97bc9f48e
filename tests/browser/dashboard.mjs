// The dashboard in headless Chromium against a network started here by `agora dev --providers 2`:
// both providers listed, a chat in the playground streamed and answered with its receipt and
// proof, then that request, its provider, its payment and its receipt on the overview. Then
// Ctrl-C: the network (children included) must stop cleanly.
//
//   AGORA_BIN=target/debug/agora node tests/browser/dashboard.mjs
//
// Screenshots go to tests/browser/artifacts/ (or $AGORA_BROWSER_ARTIFACTS).
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const artifacts = process.env.AGORA_BROWSER_ARTIFACTS || join(here, "artifacts");
mkdirSync(artifacts, { recursive: true });
const bin = process.env.AGORA_BIN || "target/debug/agora";
const chromiumPath = process.env.AGORA_CHROMIUM || "/usr/bin/chromium";

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/// Starts `agora dev --providers 2`; resolves with the printed dashboard URL and the process.
async function startNetwork(dir) {
  const [rpc, gw, p2p] = [await freePort(), await freePort(), await freePort()];
  const proc = spawn(bin, [
    "dev", "--providers", "2", "--dir", dir, "--reset",
    "--rpc", `127.0.0.1:${rpc}`, "--gateway-listen", `127.0.0.1:${gw}`,
    "--p2p-listen", `/ip4/127.0.0.1/tcp/${p2p}`, "--threads", "1", "--slots", "2",
  ], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
  let out = "";
  const started = Date.now();
  const info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agora dev did not start in 300 s:\n${out}`)), 300_000);
    const onData = (d) => {
      out += d.toString();
      const url = out.match(/dashboard\s+(http\S+)/);
      const providers = out.match(/providers\s+(\d+)/);
      if (url && providers && out.includes("Press Ctrl-C")) {
        clearTimeout(timer);
        resolve({ url: url[1], providers: Number(providers[1]), seconds: (Date.now() - started) / 1000 });
      }
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", (d) => { out += d.toString(); });
    proc.on("exit", (code) => { clearTimeout(timer); reject(new Error(`agora dev exited (${code}):\n${out}`)); });
  });
  proc.removeAllListeners("exit");
  return { proc, info, output: () => out };
}

/// Ctrl-C, and the exit code once it has stopped (or null after 60 s).
function stop(proc) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { proc.kill("SIGKILL"); resolve(null); }, 60_000);
    proc.on("exit", (code, signal) => { clearTimeout(timer); resolve(code ?? signal); });
    proc.kill("SIGINT");
  });
}

const dir = mkdtempSync(join(tmpdir(), "agora-browser-"));
const { proc, info, output } = await startNetwork(join(dir, "dev"));
let browser;
try {
  console.log(`agora dev --providers 2 ready in ${info.seconds.toFixed(1)} s; ${info.providers} providers routable`);
  assert.equal(info.providers, 2, "agora dev should report both providers routable");

  browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));

  // The overview: both providers, the chain moving, the live feed connected.
  await page.goto(info.url);
  await page.waitForFunction(() => document.querySelectorAll("#providers tbody tr").length === 2, null, { timeout: 30_000 });
  await page.waitForSelector("#live.on", { timeout: 15_000 });
  const h1 = Number(await page.textContent("#height"));
  await page.waitForFunction((h) => Number(document.querySelector("#height").textContent) > h, h1, { timeout: 30_000 });
  const providerAddrs = await page.$$eval("#providers tbody tr", (rows) => rows.map((r) => r.dataset.address));
  assert.equal(new Set(providerAddrs).size, 2, "two distinct providers listed");
  // The dev market, with both providers as members.
  const members = page.locator('#markets .market[data-market="chat/smollm2-135m-instruct"] tr[data-member]');
  await members.nth(1).waitFor({ timeout: 30_000 });
  const memberAddrs = await members.evaluateAll((rows) => rows.map((r) => r.dataset.member));
  assert.deepEqual(new Set(memberAddrs), new Set(providerAddrs), "both providers are members of the dev market");
  await page.screenshot({ path: join(artifacts, "1-overview-two-providers.png"), fullPage: true });

  // The playground: the key came in the URL's fragment; chat and watch the answer stream in.
  await page.click('nav a[data-tab="playground"]');
  assert.ok((await page.inputValue("#key")).startsWith("sk-agora-dev-"), "the dev key from the URL fills the playground");
  await page.selectOption("#model", "smollm2-135m-instruct");
  await page.fill("#prompt", "Name three colours.");
  await page.click("#send");
  // Streamed: text shows up before the answer is done.
  await page.waitForFunction(() => {
    const a = document.querySelector("#answer");
    return a && a.textContent.length > 0;
  }, null, { timeout: 60_000 });
  await page.waitForSelector("#answer.done", { timeout: 120_000 });
  const answer = await page.textContent("#answer");
  assert.ok(answer.trim().length > 0, "a non-empty answer");
  const receipt = await page.textContent("#receipt-detail");
  assert.match(receipt, /receipt verified/, "the answer's receipt verified");
  assert.match(receipt, /proof \d+ bytes/, "the answer came with a proof");
  const requestId = receipt.match(/request ([0-9a-f]{64})/)[1];
  const servedBy = receipt.match(/provider (agora1[0-9a-z]+)/)[1];
  assert.ok(providerAddrs.includes(servedBy), "served by a listed provider");
  await page.screenshot({ path: join(artifacts, "2-playground-answer-receipt.png"), fullPage: true });

  // Back on the overview: the request, its provider, payment and receipt arrived live.
  await page.click('nav a[data-tab="overview"]');
  const row = page.locator(`#requests tbody tr[data-request="${requestId}"]`);
  await row.waitFor({ timeout: 15_000 });
  assert.equal(await row.getAttribute("data-provider"), servedBy);
  const cells = await row.locator("td").allTextContents();
  // time, request, model, provider, tokens, paid, receipt, proof, result
  assert.equal(cells[2], "smollm2-135m-instruct");
  assert.ok(Number(cells[5]) > 0, `paid something: ${cells[5]}`);
  assert.match(cells[6], /✓/, "the receipt matched");
  assert.match(cells[7], /\d+ B/, "a proof came");
  assert.ok(Number(await page.textContent("#request-count")) >= 1);
  // The payment channel that paid for it, with what the gateway signed for on it.
  const channelRows = await page.$$eval("#channels tbody tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.ok(channelRows.some((c) => servedBy.startsWith(c[1].split("…")[0]) && Number(c[3]) > 0),
    `a channel to ${servedBy} with a payment: ${JSON.stringify(channelRows)}`);
  await page.screenshot({ path: join(artifacts, "3-overview-request-paid.png"), fullPage: true });

  // The wallet: the dev account's credit moved by what the request paid.
  await page.click('nav a[data-tab="wallet"]');
  await page.waitForFunction(() => document.querySelectorAll("#wallet tbody tr").length >= 5, null, { timeout: 15_000 });
  const wallet = await page.textContent("#wallet");
  assert.match(wallet, /spent \(AGR\)0\.\d+/, `the wallet shows what was spent: ${wallet}`);
  // The spend view, prefilled with the gateway's account, which opened a channel to pay.
  await page.click("#spend-show");
  await page.waitForFunction(() => document.querySelectorAll("#spend tbody tr").length >= 3, null, { timeout: 15_000 });
  const spend = await page.textContent("#spend");
  assert.match(spend, /channels[1-9]/, `the spend view shows the gateway's channel: ${spend}`);
  await page.screenshot({ path: join(artifacts, "4-wallet.png"), fullPage: true });

  assert.deepEqual(errors, [], "no script errors on the page");
  console.log(`dashboard test passed: request ${requestId.slice(0, 12)} served by ${servedBy.slice(0, 14)}, paid ${cells[5]} AGR; screenshots in ${artifacts}`);
} catch (e) {
  console.error(output().slice(-4000));
  throw e;
} finally {
  if (browser) await browser.close();
  const code = await stop(proc);
  rmSync(dir, { recursive: true, force: true });
  assert.equal(code, 0, `agora dev should stop cleanly on Ctrl-C (got ${code})`);
}
