// Tiny Analytics dashboard: plain JavaScript over this server's stats API. State lives in the
// URL (?site&period&date&filter…&share), so a view can be bookmarked or shared.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const url = new URL(location.href);
  const q = url.searchParams;
  const state = {
    share: q.get("share") || "",
    token: sessionStorage.getItem("ta-token") || "",
    site: q.get("site") || "",
    period: q.get("period") || "30d",
    date: q.get("date") || "",
    filters: q.getAll("filter"),
    tz: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
  };
  const TABLES = [
    ["page", "Top pages"], ["entry_page", "Entry pages"], ["source", "Sources"],
    ["utm_campaign", "UTM campaigns"], ["country", "Countries"], ["device", "Devices"],
    ["browser", "Browsers"], ["os", "Operating systems"],
  ];
  const KPIS = [
    ["visitors", "Visitors"], ["visits", "Visits"], ["pageviews", "Pageviews"],
    ["views_per_visit", "Views / visit"], ["bounce_rate", "Bounce rate"],
    ["visit_duration", "Visit duration"], ["conversions", "Conversions"],
  ];

  // ---- theme
  const theme = localStorage.getItem("ta-theme") ||
    (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  document.documentElement.dataset.theme = theme;
  $("theme").addEventListener("click", () => {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("ta-theme", next);
  });

  // ---- API
  function api(path, params) {
    const p = new URLSearchParams();
    for (const [k, v] of params) p.append(k, v);
    if (state.share) p.append("share", state.share);
    const headers = state.token && !state.share ? { Authorization: "Bearer " + state.token } : {};
    return fetch(path + "?" + p.toString(), { headers }).then(async (r) => {
      if (r.status === 401 && !state.share) { showLogin("That token was not accepted."); throw new Error("unauthorized"); }
      if (!r.ok) { const b = await r.json().catch(() => ({})); throw new Error(b.message || r.statusText); }
      return (r.headers.get("content-type") || "").includes("json") ? r.json() : r.text();
    });
  }
  function rangeParams() {
    const p = [["site_id", state.site], ["period", state.period], ["timezone", state.tz]];
    if (state.date) p.push(["date", state.date]);
    for (const f of state.filters) p.push(["filter", f]);
    return p;
  }

  // ---- formatting
  const nf = new Intl.NumberFormat("en");
  function fmt(metric, v) {
    if (metric === "bounce_rate") return v + "%";
    if (metric === "visit_duration") { const m = Math.floor(v / 60), s = Math.round(v % 60); return m ? m + "m " + s + "s" : s + "s"; }
    return nf.format(v);
  }
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  // ---- URL state
  function syncUrl() {
    const u = new URL(location.pathname, location.origin);
    if (state.share) u.searchParams.set("share", state.share);
    u.searchParams.set("site", state.site);
    u.searchParams.set("period", state.period);
    if (state.date) u.searchParams.set("date", state.date);
    for (const f of state.filters) u.searchParams.append("filter", f);
    history.replaceState(null, "", u);
  }

  // ---- rendering
  function renderFilters() {
    const box = $("filters");
    box.replaceChildren(...state.filters.map((f, i) => {
      const [dim, op, ...rest] = f.split(":");
      return el("span", { class: "chip", "data-filter": f }, dim + (op === "is" ? " is " : " " + op + " ") + rest.join(":"),
        el("button", { type: "button", "aria-label": "Remove filter", onclick: () => { state.filters.splice(i, 1); load(); } }, "×"));
    }));
  }
  function renderKpis(agg) {
    $("kpis").replaceChildren(...KPIS.map(([m, label]) => {
      const r = agg.results[m];
      let change = "";
      let cls = "change";
      if (r.change !== null && r.change !== undefined) {
        const good = m === "bounce_rate" ? r.change <= 0 : r.change >= 0;
        cls += r.change === 0 ? "" : good ? " up" : " down";
        change = (r.change > 0 ? "↑ " : r.change < 0 ? "↓ " : "") + Math.abs(r.change) + "% vs previous period";
      } else {
        change = "no previous data";
      }
      return el("div", { class: "kpi", "data-metric": m },
        el("div", { class: "name" }, label),
        el("div", { class: "value", "data-value": String(r.value) }, fmt(m, r.value)),
        el("div", { class: cls, "data-change": r.change === null || r.change === undefined ? "" : String(r.change) }, change));
    }));
  }
  function renderChart(ts) {
    const rows = ts.results;
    const W = 1000, H = 220, L = 40, B = 20, T = 10;
    const max = Math.max(1, ...rows.map((r) => Math.max(r.visitors, r.pageviews)));
    const x = (i) => L + (rows.length <= 1 ? 0 : (i * (W - L - 10)) / (rows.length - 1));
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "Visitors and pageviews over time");
    const add = (tag, attrs, text) => {
      const e = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text !== undefined) e.textContent = text;
      svg.append(e);
      return e;
    };
    for (const f of [0, 0.5, 1]) {
      add("line", { class: "grid", x1: L, x2: W, y1: y(max * f), y2: y(max * f) });
      add("text", { x: 2, y: y(max * f) + 3 }, nf.format(Math.round(max * f)));
    }
    const step = Math.max(1, Math.ceil(rows.length / 8));
    rows.forEach((r, i) => { if (i % step === 0) add("text", { x: x(i), y: H - 4 }, r.date.slice(5, 16).replace("T", " ")); });
    for (const m of ["pageviews", "visitors"]) {
      add("polyline", { class: m, "data-series": m, "data-values": rows.map((r) => r[m]).join(","),
        points: rows.map((r, i) => x(i).toFixed(1) + "," + y(r[m]).toFixed(1)).join(" ") });
    }
    $("chart").replaceChildren(svg);
  }
  function csvDownload(property) {
    const params = rangeParams().concat([["property", property], ["limit", "1000"], ["format", "csv"]]);
    api("/v1/stats/breakdown", params).then((text) => {
      const a = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: `${state.site}-${property}.csv` });
      document.body.append(a); a.click(); a.remove();
    }).catch(showError);
  }
  function renderTable(property, title, data) {
    const visitLevel = data.results.length && data.results[0].visits !== undefined;
    const second = property === "page" ? "pageviews" : visitLevel ? "visits" : "events";
    const rows = data.results.length ? data.results.map((r) =>
      el("tr", { "data-value": r.value, onclick: () => {
        const f = property + ":is:" + r.value;
        if (!state.filters.includes(f)) state.filters.push(f);
        load();
      } },
        el("td", {}, r.value === "" ? "(none)" : r.value),
        el("td", { class: "n", "data-visitors": String(r.visitors) }, nf.format(r.visitors)),
        el("td", { class: "n" }, nf.format(r[second]))))
      : [el("tr", {}, el("td", { class: "empty", colspan: "3" }, "No data"))];
    return el("div", { class: "card", "data-table": property },
      el("div", { class: "head" }, el("h2", {}, title),
        el("a", { class: "csv", role: "button", tabindex: "0", onclick: () => csvDownload(property) }, "CSV")),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, title), el("th", { class: "n" }, "Visitors"), el("th", { class: "n" }, second))),
        el("tbody", {}, ...rows)));
  }
  function showError(e) { $("error").hidden = false; $("error").textContent = String(e.message || e); }

  let generation = 0;
  async function load() {
    const mine = ++generation;
    syncUrl();
    renderFilters();
    $("error").hidden = true;
    document.body.dataset.loading = "1";
    try {
      const base = rangeParams();
      const [agg, ts, ...tables] = await Promise.all([
        api("/v1/stats/aggregate", base.concat([["compare", "previous_period"]])),
        api("/v1/stats/timeseries", base),
        ...TABLES.map(([p]) => api("/v1/stats/breakdown", base.concat([["property", p], ["limit", "10"]]))),
      ]);
      if (mine !== generation) return;
      renderKpis(agg);
      renderChart(ts);
      $("tables").replaceChildren(...TABLES.map(([p, title], i) => renderTable(p, title, tables[i])));
      document.body.dataset.loaded = String(mine);
    } catch (e) {
      if (e.message !== "unauthorized") showError(e);
    } finally {
      if (mine === generation) delete document.body.dataset.loading;
    }
  }
  async function realtime() {
    if (!state.site) return;
    try {
      const r = await api("/v1/stats/realtime", [["site_id", state.site]]);
      const b = $("realtime").querySelector("b");
      b.textContent = nf.format(r.visitors);
      b.dataset.value = String(r.visitors);
    } catch (_) { /* shown by the main view */ }
    bots();
  }
  // Shown only when ta-query can ask the central Prometheus (503 otherwise: the card stays hidden).
  async function bots() {
    try {
      const r = await api("/v1/stats/bots", [["site_id", state.site]]);
      const b = $("bots").querySelector("b");
      b.textContent = nf.format(r.bots);
      b.dataset.value = String(r.bots);
      $("bots").title = "Automated events the edges dropped today (UTC), by reason: " +
        Object.entries(r.by_reason).map(([k, v]) => k + " " + nf.format(v)).join(", ");
      $("bots").hidden = false;
    } catch (_) { $("bots").hidden = true; }
  }

  function showLogin(message) {
    $("main").hidden = true;
    $("login").hidden = false;
    $("logout").hidden = true;
    $("login-error").hidden = !message;
    $("login-error").textContent = message || "";
  }
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("ta-token", state.token);
    start();
  });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem("ta-token"); state.token = ""; showLogin(); });
  $("site").addEventListener("change", (e) => { state.site = e.target.value; state.filters = []; load(); realtime(); });
  $("period").addEventListener("change", (e) => { state.period = e.target.value; load(); });

  async function start() {
    if (!state.share && !state.token) { showLogin(); return; }
    let sites;
    try { sites = (await api("/v1/sites", [])).sites; } catch (e) { if (e.message !== "unauthorized") showLogin(String(e.message)); return; }
    if (!sites.length) { showLogin("This credential reads no site."); return; }
    if (!sites.includes(state.site)) state.site = sites[0];
    $("site").replaceChildren(...sites.map((s) => el("option", { value: s }, s)));
    $("site").value = state.site;
    $("site").disabled = sites.length === 1;
    $("period").value = state.period;
    $("login").hidden = true;
    $("main").hidden = false;
    $("logout").hidden = !!state.share;
    load();
    realtime();
    setInterval(realtime, 10000);
  }
  start();
})();
