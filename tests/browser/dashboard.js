// ta-query's dashboard in headless Chromium: sign in with a read token, read the KPI cards,
// chart and tables, click a row to filter, change the period, download a CSV, switch to dark
// mode, and open a share link without signing in. Returns what the screen showed; the Rust
// test compares it with the API and with its own computation.
"use strict";
const fs = require("fs");
const { args, launch, main } = require("./lib.js");

async function screen(page) {
  return page.evaluate(() => {
    const kpis = {};
    for (const k of document.querySelectorAll(".kpi")) {
      kpis[k.dataset.metric] = {
        value: Number(k.querySelector(".value").dataset.value),
        change: k.querySelector(".change").dataset.change,
        text: k.querySelector(".value").textContent,
      };
    }
    const tables = {};
    for (const t of document.querySelectorAll("[data-table]")) {
      tables[t.dataset.table] = [...t.querySelectorAll("tbody tr[data-value]")].map((r) => {
        const change = r.querySelector("[data-visitors] .change");
        const engaged = (attr) => {
          const cell = r.querySelector(`[data-${attr}]`);
          return cell ? { data: cell.getAttribute(`data-${attr}`), text: cell.textContent } : null;
        };
        return {
          value: r.dataset.value,
          visitors: Number(r.querySelector("[data-visitors]").dataset.visitors),
          change: change ? change.dataset.change : null,
          time_on_page: engaged("time-on-page"),
          scroll_depth: engaged("scroll-depth"),
        };
      });
    }
    const series = {};
    for (const p of document.querySelectorAll("#chart polyline")) {
      series[p.dataset.series] = p.dataset.values.split(",").map(Number);
    }
    const num = (e, attr) => Number(e.querySelector(`[data-${attr}]`).dataset[attr]);
    const goals = [...document.querySelectorAll("[data-card=goals] tr[data-goal]")].map((r) => ({
      goal: r.dataset.goal, visitors: num(r, "visitors"), conversions: num(r, "conversions"), rate: num(r, "rate"),
      revenue: JSON.parse(r.querySelector("[data-revenue]").dataset.revenue),
      revenue_text: r.querySelector("[data-revenue]").textContent,
      selected: r.classList.contains("selected"),
    }));
    const gb = document.querySelector("[data-goal-breakdown]");
    const goal_breakdown = gb && {
      goal: gb.dataset.goalBreakdown,
      by: document.getElementById("goal-by").value,
      rows: [...gb.querySelectorAll("tr[data-value]")].map((r) => ({ value: r.dataset.value, visitors: num(r, "visitors"), rate: num(r, "rate") })),
    };
    const pick = document.getElementById("funnel-pick");
    const funnel = pick && {
      id: pick.value,
      within: document.getElementById("funnel-within").value,
      steps: [...document.querySelectorAll("[data-card=funnel] [data-step]")].map((st) => {
        const fill = st.querySelector(".fill");
        return {
          step: Number(st.dataset.step), visitors: Number(st.dataset.visitors), dropoff: Number(st.dataset.dropoff),
          // What is drawn: the bar's width against its track, and its colour.
          width: fill.getBoundingClientRect().width / st.querySelector(".track").getBoundingClientRect().width,
          color: getComputedStyle(fill).backgroundColor,
        };
      }),
    };
    const key = document.getElementById("prop-key");
    const prop = key && {
      key: key.value,
      keys: [...key.options].map((o) => o.value),
      values: [...document.querySelectorAll("[data-prop] tr[data-value]")].map((r) => ({ value: r.dataset.value, visitors: num(r, "visitors") })),
    };
    return {
      kpis,
      tables,
      series,
      goals,
      goal_breakdown,
      funnel,
      prop,
      filters: [...document.querySelectorAll("[data-filter]")].map((c) => c.dataset.filter),
      site: document.getElementById("site").value,
      period: document.getElementById("period").value,
      compare: document.getElementById("compare").value,
      realtime: document.querySelector("#realtime b").dataset.value,
      theme: document.documentElement.dataset.theme,
      url: location.search,
      error: document.getElementById("error").hidden ? null : document.getElementById("error").textContent,
    };
  });
}

async function reloaded(page, before) {
  await page.waitForFunction(
    (prev) => document.body.dataset.loaded && document.body.dataset.loaded !== prev && !document.body.dataset.loading,
    before,
    { timeout: 10000 }
  );
}

main(async () => {
  const browser = await launch();
  const out = {};
  const errors = [];
  try {
    const ctx = await browser.newContext({ timezoneId: "UTC", colorScheme: "light", acceptDownloads: true, viewport: { width: 1280, height: 1400 } });
    const page = await ctx.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("request", (r) => {
      const u = new URL(r.url());
      if (u.origin !== new URL(args.base).origin && !u.protocol.startsWith("blob") && !u.protocol.startsWith("data")) {
        errors.push("third-party request: " + r.url());
      }
    });
    const view = `${args.base}/?site=${args.site}&period=30d&date=${args.date}`;
    await page.goto(view, { waitUntil: "load" });
    await page.waitForSelector("#login:not([hidden])");
    out.login_shown = true;
    const started = Date.now();
    await page.fill("#token", args.token);
    await page.click("#login button[type=submit]");
    await reloaded(page, undefined);
    out.first_render_ms = Date.now() - started;
    out.initial = await screen(page);
    await page.screenshot({ path: args.screenshots + "/dashboard-light.png", fullPage: true });

    // Click the first device row: a filter.
    let before = await page.evaluate(() => document.body.dataset.loaded);
    const device = out.initial.tables.device[0].value;
    await page.click(`[data-table=device] tbody tr[data-value="${device}"]`);
    await reloaded(page, before);
    out.filtered = await screen(page);
    out.filtered_device = device;

    // Remove it again; click an entry page (a visit filter), remove that; switch the period.
    before = await page.evaluate(() => document.body.dataset.loaded);
    await page.click(".chip button");
    await reloaded(page, before);
    before = await page.evaluate(() => document.body.dataset.loaded);
    const entry = out.initial.tables.entry_page[0].value;
    await page.click(`[data-table=entry_page] tbody tr[data-value="${entry}"]`);
    await reloaded(page, before);
    out.entry_filtered = await screen(page);
    out.entry_page = entry;
    before = await page.evaluate(() => document.body.dataset.loaded);
    await page.click(".chip button");
    await reloaded(page, before);
    before = await page.evaluate(() => document.body.dataset.loaded);
    await page.selectOption("#period", "7d");
    await reloaded(page, before);
    out.week = await screen(page);
    await page.screenshot({ path: args.screenshots + "/dashboard-compare-light.png", fullPage: true });
    // Comparisons off: no earlier series, no changes; then a year back.
    before = await page.evaluate(() => document.body.dataset.loaded);
    await page.selectOption("#compare", "off");
    await reloaded(page, before);
    out.week_uncompared = await screen(page);
    before = await page.evaluate(() => document.body.dataset.loaded);
    await page.selectOption("#compare", "year_over_year");
    await reloaded(page, before);
    out.week_yoy = await screen(page);
    before = await page.evaluate(() => document.body.dataset.loaded);
    await page.selectOption("#compare", "previous_period");
    await reloaded(page, before);

    // CSV of the pages table.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.click("[data-table=page] a.csv"),
    ]);
    out.csv = fs.readFileSync(await download.path(), "utf8");

    // Conversions, on the 30 days again: pick a goal, break it down by page, another funnel
    // per day, another property key, then filter by one of its values.
    const step = async (action) => {
      const prev = await page.evaluate(() => document.body.dataset.loaded);
      await action();
      await reloaded(page, prev);
      return screen(page);
    };
    out.conversions = await step(() => page.selectOption("#period", "30d"));
    out.goal_selected = await step(() => page.click("[data-card=goals] tr[data-goal=signup]"));
    out.goal_by_page = await step(() => page.selectOption("#goal-by", "page"));
    // A goal with a property condition is broken down by that property.
    out.goal_with_props = await step(() => page.click("[data-card=goals] tr[data-goal=signup-pro]"));
    await step(() => page.selectOption("#funnel-pick", "pro"));
    out.funnel_day = await step(() => page.selectOption("#funnel-within", "day"));
    out.prop_variant = await step(() => page.selectOption("#prop-key", "variant"));
    const value = out.prop_variant.prop.values[0].value;
    out.prop_filtered = await step(() => page.click(`[data-prop] tr[data-value="${value}"]`));
    await page.screenshot({ path: args.screenshots + "/dashboard-conversions-light.png", fullPage: true });

    // Dark mode.
    await page.click("#theme");
    out.dark_theme = await page.evaluate(() => document.documentElement.dataset.theme);
    out.dark = await screen(page);
    await page.screenshot({ path: args.screenshots + "/dashboard-dark.png", fullPage: true });

    // A share link: no sign-in, one site.
    const shared = await browser.newContext({ timezoneId: "UTC", viewport: { width: 1280, height: 1400 } });
    const sp = await shared.newPage();
    sp.on("pageerror", (e) => errors.push(String(e)));
    await sp.goto(`${args.base}/?share=${args.share}&period=30d&date=${args.date}`, { waitUntil: "load" });
    await reloaded(sp, undefined);
    out.shared = await screen(sp);
    out.shared_login_hidden = await sp.evaluate(() => document.getElementById("login").hidden);
    out.shared_sites = await sp.evaluate(() => [...document.querySelectorAll("#site option")].map((o) => o.value));
    await sp.screenshot({ path: args.screenshots + "/dashboard-share.png", fullPage: true });
    out.errors = errors;
    return out;
  } finally {
    await browser.close();
  }
});
