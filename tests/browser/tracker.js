// The edge's tracker script in a real page: pageview, SPA navigation, a custom event with
// props, a file download and an outbound link; a 404 page (data-404) and a hash-routed app
// (data-hash); engagement on a long page read and left; a DNT page that must send nothing; and the
// browser's own headless user agent (a bot). Asserts no cookie or storage was written.
"use strict";
const { args, launch, main, DESKTOP_CHROME } = require("./lib.js");

main(async () => {
  const browser = await launch();
  const sent = [];
  const answers = [];
  const watch = (page) => {
    page.on("request", (r) => {
      if (r.url().includes("/v1/collect")) sent.push({ url: r.url(), body: r.postData() });
    });
    page.on("response", async (r) => {
      if (r.url().includes("/v1/collect")) {
        answers.push({ status: r.status(), body: await r.text().catch(() => "") });
      }
    });
    page.on("console", (m) => answers.push({ console: m.text() }));
    page.on("pageerror", (e) => answers.push({ console: "pageerror: " + e.message }));
    page.on("requestfailed", (r) => answers.push({ failed: r.url() + " " + (r.failure() && r.failure().errorText) }));
  };
  try {
    const ctx = await browser.newContext({ userAgent: DESKTOP_CHROME });
    const page = await ctx.newPage();
    watch(page);
    await page.goto(args.page + "/", { waitUntil: "load" });
    await page.waitForFunction(() => typeof window.ta === "function");
    await page.evaluate(() => history.pushState({}, "", "/app/settings"));
    await page.evaluate(() => history.replaceState({}, "", "/app/settings")); // same page: no event
    await page.evaluate(() => window.ta("signup", { plan: "pro", seats: 3, nested: { x: 1 } }));
    // Revenue: a string and a number amount; a negative one is dropped with a warning.
    await page.evaluate(() => window.ta("purchase", { revenue: { amount: "19.90", currency: "EUR" }, plan: "pro" }));
    await page.evaluate(() => window.ta("purchase", { revenue: { amount: 5, currency: "USD" } }));
    await page.evaluate(() => window.ta("purchase_bad", { revenue: { amount: "-1", currency: "EUR" } }));
    await page.click("#download");
    await page.click("#outbound");
    await page.waitForTimeout(500);
    const storage = await page.evaluate(() => ({
      cookie: document.cookie,
      local: localStorage.length,
      session: sessionStorage.length,
    }));
    const cookies = await ctx.cookies();
    await page.screenshot({ path: args.screenshots + "/tracker-page.png" });

    // A not-found page tagged data-404, and an app that routes by the URL fragment.
    const missing = await ctx.newPage();
    watch(missing);
    await missing.goto(args.page + "/missing", { waitUntil: "load" });
    await missing.waitForFunction(() => typeof window.ta === "function");
    const routed = await ctx.newPage();
    watch(routed);
    await routed.goto(args.page + "/routed#/users/7?tab=keys", { waitUntil: "load" });
    await routed.waitForFunction(() => typeof window.ta === "function");
    await routed.evaluate(() => { location.hash = "#/settings"; });
    await routed.waitForTimeout(200);
    await routed.evaluate(() => { location.hash = "#/settings"; }); // the same route: no event
    await routed.waitForTimeout(300);

    // Engagement: a page five screens tall, read for 1.5 s, scrolled half-way, then left.
    const long = await ctx.newPage();
    watch(long);
    await long.goto(args.page + "/long", { waitUntil: "load" });
    await long.waitForFunction(() => typeof window.ta === "function");
    await long.evaluate(() =>
      window.scrollTo(0, (document.documentElement.scrollHeight - window.innerHeight) / 2)
    );
    await long.waitForTimeout(1500);
    await long.close({ runBeforeUnload: true }); // pagehide: the beacon goes as the tab closes
    await page.waitForTimeout(500);

    const dntCtx = await browser.newContext({ userAgent: DESKTOP_CHROME });
    await dntCtx.addInitScript(() =>
      Object.defineProperty(Navigator.prototype, "doNotTrack", { get: () => "1" })
    );
    const dnt = await dntCtx.newPage();
    watch(dnt);
    await dnt.goto(args.page + "/dnt", { waitUntil: "load" });
    await dnt.waitForFunction(() => typeof window.ta === "function");
    await dnt.evaluate(() => window.ta("should_not_be_sent"));
    await dnt.waitForTimeout(300);

    const headlessCtx = await browser.newContext();
    const headless = await headlessCtx.newPage();
    watch(headless);
    await headless.goto(args.page + "/headless", { waitUntil: "load" });
    await headless.waitForTimeout(500);
    return { storage, cookies: cookies.length, sent, answers };
  } finally {
    await browser.close();
  }
});
