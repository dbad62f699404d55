// First render of the dashboard, as a signed-in user opening a bookmarked view: a fresh
// browser context per run (no HTTP cache), the token already in the session, time from the
// start of navigation until every KPI, chart and table of the view has been drawn
// (`body[data-loaded]`, set once all the view's API answers are on screen). Reports each
// run's milliseconds in order, and the CPU each run took (from /proc, milliseconds): of this
// browser (every Chromium process started for it, and this driver), and of the processes
// whose pids the caller passes as `server_pids` (ClickHouse, ta-query) — on one machine the
// browser and the servers share its cores.
"use strict";
const fs = require("fs");
const { args, launch, main } = require("./lib.js");

const TICKS_MS = 10; // USER_HZ is 100 on Linux
function cpuMs(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) * TICKS_MS;
  } catch (_) {
    return 0; // gone: its CPU was counted while it lived, up to the last reading
  }
}
// This process and every process below it (Chromium's browser, renderers, GPU, utilities).
function descendants() {
  const parent = new Map();
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      parent.set(d, fs.readFileSync(`/proc/${d}/stat`, "utf8").split(") ")[1].split(" ")[1]);
    } catch (_) {}
  }
  const mine = new Set([String(process.pid)]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (!mine.has(pid) && mine.has(ppid)) { mine.add(pid); grew = true; }
    }
  }
  return [...mine];
}
// CPU of `pids` so far, each pid remembered so that one exiting mid-run is not subtracted.
function cpuOf(pids, seen) {
  for (const p of pids) seen.set(p, cpuMs(p) || seen.get(p) || 0);
  let total = 0;
  for (const v of seen.values()) total += v;
  return total;
}

main(async () => {
  const browser = await launch();
  const runs = [];
  const browserCpu = [];
  const serverCpu = [];
  const servers = (args.server_pids || []).map(String);
  try {
    // One unmeasured run first: Chromium's own start-up (first process, code caches) is not
    // the dashboard's render time. Every run still gets a fresh context and fresh answers.
    for (let i = -1; i < (args.runs || 5); i++) {
      const ctx = await browser.newContext({ timezoneId: "UTC", viewport: { width: 1280, height: 1400 } });
      await ctx.addInitScript((token) => sessionStorage.setItem("ta-token", token), args.token);
      const page = await ctx.newPage();
      const seen = new Map();
      const b0 = cpuOf(descendants(), seen);
      const s0 = servers.reduce((t, p) => t + cpuMs(p), 0);
      await page.goto(`${args.base}/?site=${args.site}&period=30d&date=${args.date}${args.extra || ""}`, { waitUntil: "commit" });
      await page.waitForFunction(
        () => document.body && document.body.dataset.loaded && !document.body.dataset.loading,
        undefined,
        { timeout: 60000, polling: 5 }
      );
      const ms = await page.evaluate(() => performance.now());
      const b1 = cpuOf(descendants(), seen);
      const s1 = servers.reduce((t, p) => t + cpuMs(p), 0);
      const error = await page.evaluate(() => (document.getElementById("error").hidden ? null : document.getElementById("error").textContent));
      if (error) throw new Error("the dashboard showed an error: " + error);
      const kpis = await page.evaluate(() => document.querySelectorAll(".kpi").length);
      if (kpis === 0) throw new Error("no KPI cards were drawn");
      if (i >= 0) {
        runs.push(ms);
        browserCpu.push(b1 - b0);
        serverCpu.push(s1 - s0);
      }
      await ctx.close();
    }
  } finally {
    await browser.close();
  }
  return { runs, browser_cpu: browserCpu, server_cpu: serverCpu };
});
