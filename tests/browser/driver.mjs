// Drives Debian's Chromium for tests/console.rs: one JSON command per line on stdin, one JSON
// answer per line on stdout ({"ok": true, "value": …} or {"ok": false, "error": "…"}), so that
// the Rust test keeps the whole scenario (AWS calls, the service, the browser) in one place.
//
// Commands: goto {url}, click {selector}, text {selector}, count {selector},
// wait {selector, text?, timeout_ms?}, wait_gone {selector, timeout_ms?},
// eval {js}, screenshot {path}, dialogs {accept}, console, quit.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const executablePath = process.env.TUGBOAT_CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  headless: true,
  // As root in a sandbox-less container, with a closed network: no background traffic.
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
let acceptDialogs = true;
const dialogs = [];
page.on("dialog", async (d) => {
  dialogs.push(d.message());
  if (acceptDialogs) await d.accept(); else await d.dismiss();
});
// Anything a page runs that it should not (a script from an event body) shows here.
const messages = [];
page.on("console", (m) => messages.push(`${m.type()}: ${m.text()}`));
page.on("pageerror", (e) => messages.push(`pageerror: ${e.message}`));

const run = {
  goto: async ({ url }) => { const r = await page.goto(url, { waitUntil: "load" }); return r ? r.status() : null; },
  click: async ({ selector }) => { await page.click(selector, { timeout: 10000 }); return null; },
  text: async ({ selector }) => page.textContent(selector, { timeout: 10000 }),
  count: async ({ selector }) => page.locator(selector).count(),
  wait: async ({ selector, text, timeout_ms }) => {
    const locator = text ? page.locator(selector, { hasText: text }) : page.locator(selector);
    await locator.first().waitFor({ state: "visible", timeout: timeout_ms ?? 10000 });
    return null;
  },
  wait_gone: async ({ selector, timeout_ms }) => {
    await page.locator(selector).first().waitFor({ state: "detached", timeout: timeout_ms ?? 10000 });
    return null;
  },
  eval: async ({ js }) => page.evaluate(js),
  screenshot: async ({ path }) => { await page.screenshot({ path, fullPage: true }); return path; },
  dialogs: async ({ accept }) => { acceptDialogs = accept; return dialogs.splice(0); },
  console: async () => messages.splice(0),
  url: async () => page.url(),
};

const lines = createInterface({ input: process.stdin });
process.stdout.write(JSON.stringify({ ok: true, value: "ready" }) + "\n");
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    const command = JSON.parse(line);
    if (command.op === "quit") break;
    const f = run[command.op];
    if (!f) throw new Error(`unknown op ${command.op}`);
    answer = { ok: true, value: await f(command) };
  } catch (e) {
    answer = { ok: false, error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await browser.close();
