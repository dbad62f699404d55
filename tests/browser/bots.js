// The dashboard's "bots filtered today" in headless Chromium: sign in with a read token, wait
// for the card, return what it shows (and whether the page logged errors).
"use strict";
const { args, launch, main } = require("./lib.js");

main(async () => {
  const browser = await launch();
  const errors = [];
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(args.base + "/?site=" + encodeURIComponent(args.site));
    await page.fill("#token", args.token);
    await page.click("#login button[type=submit]");
    await page.waitForSelector("#bots:not([hidden])", { timeout: 20000 });
    await page.waitForFunction(() => document.querySelector("#bots b").dataset.value !== "", null, { timeout: 20000 });
    const shown = await page.evaluate(() => ({
      value: Number(document.querySelector("#bots b").dataset.value),
      text: document.querySelector("#bots").textContent.trim(),
      title: document.querySelector("#bots").title,
    }));
    if (args.screenshots) await page.screenshot({ path: args.screenshots + "/dashboard-bots.png" });
    return { ...shown, errors };
  } finally {
    await browser.close();
  }
});
