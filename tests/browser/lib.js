// Shared by the browser tests: launch Debian's Chromium through playwright-core with the flags
// this machine needs (no background networking: the network is closed), read the arguments
// the Rust test passed, and print one JSON result line for it.
"use strict";
const { chromium } = require("playwright-core");

exports.args = JSON.parse(process.env.TA_BROWSER_ARGS || "{}");

exports.launch = () =>
  chromium.launch({
    executablePath: process.env.TA_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });

// A desktop Chrome user agent: headless Chromium's own ("HeadlessChrome") is dropped as a bot
// by the edge, as it should be.
exports.DESKTOP_CHROME =
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

exports.main = (fn) =>
  fn()
    .then((result) => {
      // Exit only once the line is written: a pipe takes it asynchronously, and exiting at
      // once cut results over 64 KiB short.
      process.stdout.write("TA_RESULT " + JSON.stringify(result) + "\n", () => process.exit(0));
    })
    .catch((err) => {
      process.stderr.write((err && err.stack) || String(err));
      process.exit(1);
    });
