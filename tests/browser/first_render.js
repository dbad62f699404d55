// First render of the dashboard, as a signed-in user opening a bookmarked view: a fresh
// browser context per run (no HTTP cache), the token already in the session, time from the
// start of navigation until every KPI, chart and table of the view has been drawn
// (`body[data-loaded]`, set once all the view's API answers are on screen). Reports each
// run's milliseconds in order.
"use strict";
const { args, launch, main } = require("./lib.js");

main(async () => {
  const browser = await launch();
  const runs = [];
  try {
    // One unmeasured run first: Chromium's own start-up (first process, code caches) is not
    // the dashboard's render time. Every run still gets a fresh context and fresh answers.
    for (let i = -1; i < (args.runs || 5); i++) {
      const ctx = await browser.newContext({ timezoneId: "UTC", viewport: { width: 1280, height: 1400 } });
      await ctx.addInitScript((token) => sessionStorage.setItem("ta-token", token), args.token);
      const page = await ctx.newPage();
      await page.goto(`${args.base}/?site=${args.site}&period=30d&date=${args.date}${args.extra || ""}`, { waitUntil: "commit" });
      await page.waitForFunction(
        () => document.body && document.body.dataset.loaded && !document.body.dataset.loading,
        undefined,
        { timeout: 60000, polling: 5 }
      );
      const ms = await page.evaluate(() => performance.now());
      const error = await page.evaluate(() => (document.getElementById("error").hidden ? null : document.getElementById("error").textContent));
      if (error) throw new Error("the dashboard showed an error: " + error);
      const kpis = await page.evaluate(() => document.querySelectorAll(".kpi").length);
      if (kpis === 0) throw new Error("no KPI cards were drawn");
      if (i >= 0) runs.push(ms);
      await ctx.close();
    }
  } finally {
    await browser.close();
  }
  return { runs };
});
