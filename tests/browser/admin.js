// The dashboard's admin view in headless Chromium, in phases the Rust test runs one after the
// other (checking the API and the credentials between them): `setup` creates sites through
// the form, `manage` edits settings, rotates the ingest key and the HMAC secret, copies the
// tracker snippet and creates a read token and a password-protected share link, `share` opens
// that link and a read token's dashboard, `revoke` revokes the read token and reads the audit
// log. Each phase returns what the screen showed and the page's errors.
"use strict";
const { args, launch, main } = require("./lib.js");

// Errors the page logged (uncaught exceptions, CSP refusals) and requests to other origins.
// Answers that are not 2xx (a refused form, the password a share link asks for, the bots card
// without Prometheus) are expected: Chromium logs them as "Failed to load resource".
function watch(page, errors) {
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource: the server responded with a status of/.test(m.text())) {
      errors.push("console: " + m.text());
    }
  });
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (u.origin !== new URL(args.base).origin && !u.protocol.startsWith("blob") && !u.protocol.startsWith("data")) {
      errors.push("third-party request: " + r.url());
    }
  });
}

async function context(browser) {
  const ctx = await browser.newContext({ timezoneId: "UTC", colorScheme: "light", viewport: { width: 1280, height: 1400 } });
  await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: args.base });
  return ctx;
}

// Run `action` and wait for the admin view to have reloaded its data after it.
async function adminStep(page, action) {
  const before = await page.evaluate(() => document.body.dataset.adminLoaded);
  await action();
  await page.waitForFunction((prev) => document.body.dataset.adminLoaded && document.body.dataset.adminLoaded !== prev, before, { timeout: 10000 });
}

async function signIn(page, token, query) {
  await page.goto(`${args.base}/?${query}`, { waitUntil: "load" });
  await page.waitForSelector("#login:not([hidden])");
  await page.fill("#token", token);
  await page.click("#login button[type=submit]");
}

async function signInAdmin(page, query) {
  await adminStep(page, () => signIn(page, args.admin, query));
}

// What the admin view shows.
function adminScreen(page) {
  return page.evaluate(() => {
    const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent : null; };
    const shown = (sel) => { const e = document.querySelector(sel); return !!e && !e.hidden && !e.closest("[hidden]"); };
    return {
      views_shown: shown("#views"),
      admin_shown: shown("#admin"),
      stats_shown: shown("#main"),
      url: location.search,
      selected: text("[data-site-id]"),
      sites: [...document.querySelectorAll("#admin-sites tr[data-site]")].map((r) => ({
        id: r.dataset.site, origins: r.querySelector("[data-origins]").dataset.origins, selected: r.classList.contains("selected"),
      })),
      keys: [...document.querySelectorAll("[data-keys] tr[data-key]")].map((r) => ({
        key: r.dataset.key, not_after: r.dataset.notAfter === "" ? null : Number(r.dataset.notAfter), ends: r.lastElementChild.textContent,
      })),
      credentials: [...document.querySelectorAll("#admin-credentials tr[data-credential]")].map((r) => ({
        id: r.dataset.credential, kind: r.dataset.kind, label: r.dataset.label, sites: r.children[1].textContent,
        expires_at: r.querySelector("[data-expires]").dataset.expires === "" ? null : Number(r.querySelector("[data-expires]").dataset.expires),
        password: r.querySelector("[data-password]").dataset.password === "true",
      })),
      audit: [...document.querySelectorAll("#admin-audit tr[data-action]")].map((r) => ({
        seq: Number(r.dataset.seq), action: r.dataset.action, target: r.dataset.target,
      })),
      admin_error: shown("#admin-error") ? text("#admin-error") : null,
    };
  });
}

// A form's error as shown: its message, the field it names, and whether that field is marked.
async function formError(page, form) {
  await page.waitForSelector(`${form} [data-error]:not([hidden])`);
  return page.evaluate((sel) => {
    const box = document.querySelector(`${sel} [data-error]`);
    const field = box.dataset.part && document.querySelector(`${sel} [name="${box.dataset.part}"]`);
    return { message: box.textContent, part: box.dataset.part, marked: !!field && field.getAttribute("aria-invalid") === "true" };
  }, form);
}

// A one-time secret box: the secret, its note, and what the page keeps of it.
async function secret(page, box) {
  await page.waitForSelector(`${box}:not([hidden]) [data-secret]`);
  return page.evaluate((sel) => {
    const b = document.querySelector(sel);
    const value = b.querySelector("[data-secret]").dataset.secret;
    return {
      value, title: b.querySelector("h3").textContent, once: b.querySelector(".once").textContent,
      kind: b.dataset.kind || null, credential: b.dataset.credential || null,
      // Nothing keeps a secret: not the URL, not storage.
      stored: location.href.includes(value) || Object.values(localStorage).concat(Object.values(sessionStorage)).some((v) => v.includes(value)),
    };
  }, box);
}

async function looks(page) {
  return page.evaluate(() => ({
    theme: document.documentElement.dataset.theme,
    body: getComputedStyle(document.body).backgroundColor,
    card: getComputedStyle(document.querySelector("[data-card=sites]")).backgroundColor,
    text: getComputedStyle(document.querySelector("[data-card=sites] h2")).color,
    snippet: getComputedStyle(document.querySelector("#snippet")).backgroundColor,
    // Long keys and secrets wrap: nothing is wider than the window.
    overflow: document.documentElement.scrollWidth > window.innerWidth,
  }));
}

const phases = {
  async setup(browser, out) {
    const page = await (await context(browser)).newPage();
    watch(page, out.errors);
    await signInAdmin(page, "view=admin");
    out.initial = await adminScreen(page);

    // A wrong origin: the API's message, on the field it names.
    await page.fill("#site-create [name=id]", args.site);
    await page.fill("#site-create [name=allowed_origins]", "one.example");
    await page.fill("#site-create [name=hostnames]", "one.example");
    await page.click("#site-create button[type=submit]");
    out.create_error = await formError(page, "#site-create");
    await page.fill("#site-create [name=allowed_origins]", args.origins[0]);
    await adminStep(page, () => page.click("#site-create button[type=submit]"));
    out.created = await adminScreen(page);

    // A second site with an HMAC secret (shown once), then deleted after a confirmation.
    await page.fill("#site-create [name=id]", "scratch");
    await page.fill("#site-create [name=allowed_origins]", "*");
    await page.check("#site-create [name=hmac_secret]");
    await adminStep(page, () => page.click("#site-create button[type=submit]"));
    out.scratch_secret = await secret(page, "#site-create-secret");
    out.scratch = await adminScreen(page);
    await page.click("#delete-site");
    out.delete_question = await page.textContent("#admin-site .confirm .question");
    await adminStep(page, () => page.click("#admin-site [data-confirm=yes]"));
    out.deleted = await adminScreen(page);
  },

  async manage(browser, out) {
    const page = await (await context(browser)).newPage();
    watch(page, out.errors);
    await signInAdmin(page, `view=admin&site=${args.site}`);
    out.initial = await adminScreen(page);

    // Settings: a refused rate limit first, then a save.
    await page.fill("#site-settings [name=allowed_origins]", args.origins.join("\n"));
    await page.check("#site-settings [name=respect_dnt]");
    await page.fill("#site-settings [name=rate_limit_per_sec]", "0");
    await page.click("#site-settings button[type=submit]");
    out.settings_error = await formError(page, "#site-settings");
    await page.fill("#site-settings [name=rate_limit_per_sec]", "50");
    await page.fill("#site-settings [name=rate_limit_burst]", "100");
    await adminStep(page, () => page.click("#site-settings button[type=submit]"));
    out.edited = await adminScreen(page);
    out.saved = await page.textContent("#site-settings [data-saved]");

    // The edge's URL, typed once and remembered across visits.
    await page.fill("#edge-url", args.edge + "/");
    await adminStep(page, () => page.reload({ waitUntil: "load" }));
    out.edge_url = await page.inputValue("#edge-url");

    // Rotate the ingest key, keeping the old one two hours.
    out.keys_before = (await adminScreen(page)).keys;
    await page.fill("#grace-hours", "2");
    await adminStep(page, () => page.click("#rotate-key button[type=submit]"));
    out.rotated = await adminScreen(page);
    out.snippet = await page.textContent("#snippet");
    await page.click("#copy-snippet");
    await page.waitForSelector("#copy-snippet[data-copied]");
    out.copied = await page.getAttribute("#copy-snippet", "data-copied");
    out.clipboard = await page.evaluate(() => navigator.clipboard.readText().catch((e) => "unreadable: " + e));

    // The HMAC secret: generated, then rotated after a confirmation; each shown once.
    await adminStep(page, () => page.click("#rotate-hmac"));
    out.hmac_first = await secret(page, "#hmac-secret");
    await page.click("#rotate-hmac");
    await adminStep(page, () => page.click("#admin-site [data-confirm=yes]"));
    await page.waitForFunction((prev) => {
      const s = document.querySelector("#hmac-secret [data-secret]");
      return s && s.dataset.secret !== prev;
    }, out.hmac_first.value);
    out.hmac = await secret(page, "#hmac-secret");
    out.hmac_state = await page.getAttribute("[data-hmac]", "data-hmac");

    // A read token, then a share link: a too-short password is refused, a good one taken.
    await page.selectOption("#credential-create [name=kind]", "read");
    await page.selectOption("#credential-create [name=sites]", [args.site]);
    await page.fill("#credential-create [name=label]", "ci reader");
    await adminStep(page, () => page.click("#credential-create button[type=submit]"));
    out.read = await secret(page, "#credential-secret");
    await page.selectOption("#credential-create [name=kind]", "share");
    out.share_fields = await page.evaluate(() => ["password", "filter", "sites"].every((n) => !document.querySelector(`#credential-create [name=${n}]`).closest("label").hidden));
    await page.selectOption("#credential-create [name=sites]", args.site);
    await page.fill("#credential-create [name=label]", "board");
    await page.fill("#credential-create [name=password]", "short");
    await page.click("#credential-create button[type=submit]");
    out.password_error = await formError(page, "#credential-create");
    await page.fill("#credential-create [name=password]", args.password);
    await page.fill("#credential-create [name=expires_at]", "2030-01-01T00:00");
    await adminStep(page, () => page.click("#credential-create button[type=submit]"));
    out.share = await secret(page, "#credential-secret");
    out.listed = await adminScreen(page);

    await page.screenshot({ path: args.screenshots + "/admin-light.png", fullPage: true });
    out.light = await looks(page);
    await page.click("#theme");
    await page.screenshot({ path: args.screenshots + "/admin-dark.png", fullPage: true });
    out.dark = await looks(page);
  },

  async share(browser, out) {
    // The share link: a password form, a refused password, then the stats.
    const ctx = await context(browser);
    const page = await ctx.newPage();
    watch(page, out.errors);
    const sent = [];
    page.on("request", (r) => { if (new URL(r.url()).pathname.startsWith("/v1/")) sent.push(r.headers()["x-share-password"] || null); });
    await page.goto(`${args.share_url}&period=30d&date=${args.date}`, { waitUntil: "load" });
    await page.waitForSelector("#share-login:not([hidden])");
    out.prompted = { main_hidden: await page.evaluate(() => document.getElementById("main").hidden), login_hidden: await page.evaluate(() => document.getElementById("login").hidden) };
    await page.screenshot({ path: args.screenshots + "/share-password.png", fullPage: true });
    await page.fill("#share-password", "not the password");
    await page.click("#share-login button[type=submit]");
    await page.waitForSelector("#share-login-error:not([hidden])");
    out.refused = await page.textContent("#share-login-error");
    const before = sent.length;
    await page.fill("#share-password", args.password);
    await page.click("#share-login button[type=submit]");
    await page.waitForFunction(() => document.body.dataset.loaded && !document.body.dataset.loading, null, { timeout: 10000 });
    out.kpis = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll(".kpi")].map((k) => [k.dataset.metric, Number(k.querySelector(".value").dataset.value)])));
    out.share_login_hidden = await page.evaluate(() => document.getElementById("share-login").hidden);
    out.sent_after = sent.slice(before);
    out.storage = await page.evaluate(() => ({ session: Object.keys(sessionStorage), local: Object.keys(localStorage) }));
    // Kept for this tab: a reload asks no more.
    await page.reload({ waitUntil: "load" });
    await page.waitForFunction(() => document.body.dataset.loaded && !document.body.dataset.loading, null, { timeout: 10000 });
    out.reload_prompted = await page.evaluate(() => !document.getElementById("share-login").hidden);

    // A read token sees no Admin tab, and ?view=admin gives it the stats.
    const reader = await (await context(browser)).newPage();
    watch(reader, out.errors);
    await signIn(reader, args.read, `view=admin&period=30d&date=${args.date}`);
    await reader.waitForFunction(() => document.body.dataset.loaded && !document.body.dataset.loading, null, { timeout: 10000 });
    out.reader = await adminScreen(reader);
  },

  async revoke(browser, out) {
    const page = await (await context(browser)).newPage();
    watch(page, out.errors);
    await signInAdmin(page, "view=admin");
    await page.click(`[data-revoke="${args.read_id}"]`);
    await adminStep(page, () => page.click(`#admin-credentials [data-confirm=yes]`));
    out.after = await adminScreen(page);
    await page.screenshot({ path: args.screenshots + "/admin-audit-light.png", fullPage: true });

    // The tabs: to the stats of the registry's sites and back.
    await page.click("#tab-stats");
    await page.waitForFunction(() => document.body.dataset.loaded && !document.body.dataset.loading, null, { timeout: 10000 });
    out.stats_tab = await adminScreen(page);
    out.stats_tab.site_options = await page.evaluate(() => [...document.querySelectorAll("#site option")].map((o) => o.value));
    await adminStep(page, () => page.click("#tab-admin"));
    out.admin_tab = await adminScreen(page);
  },
};

main(async () => {
  const browser = await launch();
  const out = { errors: [] };
  try {
    await phases[args.phase](browser, out);
    return out;
  } finally {
    await browser.close();
  }
});
