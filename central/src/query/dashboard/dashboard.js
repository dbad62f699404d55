// Tiny Analytics dashboard: plain JavaScript over this server's stats API, and (for admin
// tokens) the admin view over /v1/admin/*. State lives in the URL
// (?site&period&date&filter…&share&view=admin), so a view can be bookmarked or shared.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const url = new URL(location.href);
  const q = url.searchParams;
  const state = {
    share: q.get("share") || "",
    // A share link's password: this tab only (sessionStorage), sent as X-Share-Password.
    sharePassword: q.get("share") ? sessionStorage.getItem("ta-share-password:" + q.get("share")) || "" : "",
    token: sessionStorage.getItem("ta-token") || "",
    // "stats", or "admin" (admin tokens only: otherwise the stats view is shown).
    view: q.get("view") === "admin" ? "admin" : "stats",
    sites: [],
    site: q.get("site") || "",
    period: q.get("period") || "30d",
    date: q.get("date") || "",
    // What the period is compared with (KPIs, chart, tables): previous_period, year_over_year, off.
    compare: ["year_over_year", "off"].includes(q.get("compare")) ? q.get("compare") : "previous_period",
    filters: q.getAll("filter"),
    tz: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
    // Conversions: the goal broken down and by what, the funnel shown and how, the property key.
    goal: q.get("goal") || "",
    goalBy: q.get("goal_by") || "source",
    funnel: q.get("funnel") || "",
    within: q.get("within") === "day" ? "day" : "visit",
    prop: q.get("prop") || "",
  };
  const GOAL_DIMENSIONS = [
    ["source", "Source"], ["channel", "Channel"], ["referrer", "Referrer"], ["utm_campaign", "UTM campaign"],
    ["entry_page", "Entry page"], ["page", "Page"], ["hostname", "Hostname"], ["country", "Country"], ["device", "Device"],
    ["browser", "Browser"], ["os", "OS"],
  ];
  const TABLES = [
    ["page", "Top pages"], ["entry_page", "Entry pages"], ["source", "Sources"],
    ["utm_campaign", "UTM campaigns"], ["country", "Countries"], ["device", "Devices"],
    ["browser", "Browsers"], ["os", "Operating systems"],
  ];
  const ENGAGED = [["time_on_page", "Time on page"], ["scroll_depth", "Scroll"]];
  const KPIS = [
    ["visitors", "Visitors"], ["visits", "Visits"], ["pageviews", "Pageviews"],
    ["views_per_visit", "Views / visit"], ["bounce_rate", "Bounce rate"],
    ["visit_duration", "Visit duration"], ["time_on_page", "Time on page"],
    ["conversions", "Conversions"],
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
    const headers = {};
    if (state.share && state.sharePassword) headers["X-Share-Password"] = state.sharePassword;
    else if (state.token && !state.share) headers.Authorization = "Bearer " + state.token;
    return fetch(path + "?" + p.toString(), { headers }).then(async (r) => {
      if (r.status === 401 && !state.share) { showLogin("That token was not accepted."); throw new Error("unauthorized"); }
      if (!r.ok) {
        const b = await r.json().catch(() => ({}));
        if (r.status === 401 && b.error === "share_password_required") { showSharePassword(); throw new Error("unauthorized"); }
        throw new Error(b.message || r.statusText);
      }
      return (r.headers.get("content-type") || "").includes("json") ? r.json() : r.text();
    });
  }
  function rangeParams() {
    const p = [["site_id", state.site], ["period", state.period], ["timezone", state.tz]];
    if (state.date) p.push(["date", state.date]);
    for (const f of state.filters) p.push(["filter", f]);
    return p;
  }
  // The range parameters plus the comparison chosen (none when off).
  function comparedParams(base) {
    return state.compare === "off" ? base : base.concat([["compare", state.compare]]);
  }
  const COMPARED = { previous_period: "previous period", year_over_year: "a year before" };
  // "↑ 12.5%": a change in percent, with the class telling whether it is good news.
  function changeLabel(metric, change) {
    if (change === null || change === undefined) return null;
    const good = metric === "bounce_rate" ? change <= 0 : change >= 0;
    return {
      cls: "change" + (change === 0 ? "" : good ? " up" : " down"),
      text: (change > 0 ? "↑ " : change < 0 ? "↓ " : "") + Math.abs(change) + "%",
    };
  }

  // ---- formatting
  const nf = new Intl.NumberFormat("en");
  function fmt(metric, v) {
    if (v === null || v === undefined) return "–"; // no engagement data
    if (metric === "bounce_rate" || metric === "scroll_depth") return v + "%";
    if (metric === "visit_duration" || metric === "time_on_page") { const m = Math.floor(v / 60), s = Math.round(v % 60); return m ? m + "m " + s + "s" : s + "s"; }
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
    if (state.view === "admin") u.searchParams.set("view", "admin");
    if (state.site) u.searchParams.set("site", state.site);
    u.searchParams.set("period", state.period);
    if (state.date) u.searchParams.set("date", state.date);
    if (state.compare !== "previous_period") u.searchParams.set("compare", state.compare);
    for (const f of state.filters) u.searchParams.append("filter", f);
    if (state.goal) { u.searchParams.set("goal", state.goal); u.searchParams.set("goal_by", state.goalBy); }
    if (state.funnel) u.searchParams.set("funnel", state.funnel);
    if (state.within !== "visit") u.searchParams.set("within", state.within);
    if (state.prop) u.searchParams.set("prop", state.prop);
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
      const shown = changeLabel(m, r.change);
      if (!agg.comparison) {
        change = "";
      } else if (shown) {
        cls = shown.cls;
        change = shown.text + " vs " + COMPARED[agg.comparison.mode];
      } else {
        change = "no earlier data";
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
    const max = Math.max(1, ...rows.map((r) => Math.max(r.visitors, r.pageviews)),
      ...(ts.comparison ? ts.comparison.results.slice(0, rows.length).map((r) => r.visitors) : []));
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
    // The compared range's visitors, dashed, bucket n beside bucket n.
    const earlier = ts.comparison ? ts.comparison.results.slice(0, rows.length) : [];
    const series = [["pageviews", rows, "pageviews"], ["visitors", rows, "visitors"]];
    if (earlier.length) series.unshift(["visitors_comparison", earlier, "visitors"]);
    $("legend-compared").hidden = !earlier.length;
    for (const [name, points, m] of series) {
      add("polyline", { class: name, "data-series": name, "data-values": points.map((r) => r[m]).join(","),
        points: points.map((r, i) => x(i).toFixed(1) + "," + y(r[m]).toFixed(1)).join(" ") });
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
  // A row's change in visitors against the compared range, when there is one.
  function visitorsChange(row) {
    if (!row.comparison) return [];
    const label = changeLabel("visitors", row.comparison.change.visitors);
    return [el("span", { class: label ? label.cls : "change", "data-change": label ? String(row.comparison.change.visitors) : "",
      title: "was " + nf.format(row.comparison.visitors) }, label ? label.text : "new")];
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
        el("td", { class: "n", "data-visitors": String(r.visitors) }, nf.format(r.visitors),
          ...visitorsChange(r)),
        el("td", { class: "n" }, nf.format(r[second])),
        // Pages: engagement (time on page, scroll depth), "–" where none was reported.
        ...ENGAGED.filter(() => property === "page").map(([m]) =>
          el("td", { class: "n", ["data-" + m.replace(/_/g, "-")]: String(r[m]) }, fmt(m, r[m])))))
      : [el("tr", {}, el("td", { class: "empty", colspan: "3" }, "No data"))];
    return el("div", { class: "card", "data-table": property },
      el("div", { class: "head" }, el("h2", {}, title),
        el("a", { class: "csv", role: "button", tabindex: "0", onclick: () => csvDownload(property) }, "CSV")),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, title), el("th", { class: "n" }, "Visitors"), el("th", { class: "n" }, second),
        ...ENGAGED.filter(() => property === "page").map(([, label]) => el("th", { class: "n" }, label)))),
        el("tbody", {}, ...rows)));
  }
  // ---- conversions: goals, funnel, custom properties
  const pct = (v) => v + "%";
  function addFilter(f) { if (!state.filters.includes(f)) state.filters.push(f); load(); }
  function select(id, options, value, onchange) {
    const s = el("select", { id, "aria-label": id.replace(/-/g, " "), onchange: (e) => onchange(e.target.value) },
      ...options.map(([v, label]) => el("option", { value: v }, label)));
    s.value = value;
    return s;
  }
  // Revenue per currency, exact as the API gives it (decimal strings; never added across
  // currencies): "EUR 19.90 (avg 9.95)".
  function revenueCell(revenue) {
    const money = (v) => v.replace(/(\.\d\d)00$/, "$1");
    const parts = (revenue || []).map((r) => r.currency + " " + money(r.total) + " (avg " + money(r.average) + ")");
    return el("td", { class: "n rev", "data-revenue": JSON.stringify(revenue || []) }, parts.join(" · ") || "–");
  }
  // What a goal can be broken down by: the fixed dimensions, then the property keys of its
  // conditions first (a goal with conditions shows their breakdown), then the other keys seen.
  function goalDimensions(goal, keys) {
    const own = goal && goal.props ? Object.keys(goal.props) : [];
    const seen = keys.results.map((k) => k.value).filter((k) => !own.includes(k));
    const all = GOAL_DIMENSIONS.concat(own.concat(seen).map((k) => ["prop." + k, "Property " + k]));
    // A bookmarked key that this period has not seen stays pickable.
    if (!all.some(([d]) => d === state.goalBy)) all.push([state.goalBy, state.goalBy]);
    return all;
  }
  function renderGoals(defs, goals, breakdown, keys) {
    const rows = goals.results.map((r) => el("tr", { "data-goal": r.goal, class: r.goal === state.goal ? "selected" : "",
      onclick: () => {
        state.goal = state.goal === r.goal ? "" : r.goal;
        const def = defs.goals.find((g) => g.id === state.goal);
        if (def && def.props) state.goalBy = "prop." + Object.keys(def.props)[0];
        load();
      } },
      el("td", {}, r.name),
      el("td", { class: "n", "data-visitors": String(r.visitors) }, nf.format(r.visitors)),
      el("td", { class: "n", "data-conversions": String(r.conversions) }, nf.format(r.conversions)),
      el("td", { class: "n", "data-rate": String(r.conversion_rate) }, pct(r.conversion_rate)),
      revenueCell(r.revenue)));
    const card = el("div", { class: "card wide", "data-card": "goals" },
      el("div", { class: "head" }, el("h2", {}, "Goals"), el("span", { class: "muted" }, "click a goal to see what converts")),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Goal"), el("th", { class: "n" }, "Visitors"),
        el("th", { class: "n" }, "Conversions"), el("th", { class: "n" }, "Conv. rate"), el("th", { class: "n rev" }, "Revenue"))),
        el("tbody", {}, ...rows)));
    if (breakdown) {
      const goal = defs.goals.find((g) => g.id === state.goal);
      const values = breakdown.results.length ? breakdown.results.map((r) => el("tr", { "data-value": r.value,
        onclick: () => addFilter(state.goalBy + ":is:" + r.value) },
        el("td", {}, r.value === "" ? "(none)" : r.value),
        el("td", { class: "n", "data-visitors": String(r.visitors) }, nf.format(r.visitors),
          ...visitorsChange(r)),
        el("td", { class: "n" }, nf.format(r.conversions)),
        el("td", { class: "n", "data-rate": String(r.conversion_rate) }, pct(r.conversion_rate)),
        revenueCell(r.revenue)))
        : [el("tr", {}, el("td", { class: "empty", colspan: "5" }, "No conversions"))];
      card.append(el("div", { class: "head sub" }, el("h2", {}, (goal ? goal.name : state.goal) + " by"),
        select("goal-by", goalDimensions(goal, keys), state.goalBy, (v) => { state.goalBy = v; load(); })),
        el("table", { "data-goal-breakdown": state.goal }, el("thead", {}, el("tr", {},
          el("th", {}, goalDimensions(goal, keys).find(([d]) => d === state.goalBy)[1]), el("th", { class: "n" }, "Visitors"),
          el("th", { class: "n" }, "Conversions"), el("th", { class: "n" }, "Conv. rate"), el("th", { class: "n rev" }, "Revenue"))),
          el("tbody", {}, ...values)));
    }
    return card;
  }
  // Through the CSSOM: the page's policy refuses style attributes.
  function bar(percent) {
    const fill = el("div", { class: "fill" });
    fill.style.width = percent.toFixed(2) + "%";
    return fill;
  }
  function renderFunnel(defs, f) {
    const first = f.results[0].visitors;
    const max = Math.max(1, f.visitors);
    const steps = f.results.map((r) => el("div", { class: "step", "data-step": String(r.step), "data-visitors": String(r.visitors),
      "data-dropoff": String(r.dropoff) },
      el("div", { class: "label" }, r.step + ". " + r.name),
      el("div", { class: "track" }, bar(100 * r.visitors / max)),
      el("div", { class: "nums" }, nf.format(r.visitors) + " visitors · " + pct(r.conversion_from_previous) + " of previous" +
        (r.step > 1 ? " · " + pct(r.conversion_from_first) + " of step 1" : "") + " · " + nf.format(r.dropoff) + " dropped")));
    return el("div", { class: "card wide", "data-card": "funnel" },
      el("div", { class: "head" }, el("h2", {}, "Funnel"),
        el("span", {}, select("funnel-pick", defs.funnels.map((x) => [x.id, x.name]), f.funnel.id, (v) => { state.funnel = v; load(); }), " ",
          select("funnel-within", [["visit", "within a visit"], ["day", "within a day"]], state.within, (v) => { state.within = v; load(); }))),
      el("p", { class: "muted" }, nf.format(f.visitors) + " visitors in the period" + (first ? "" : "; nobody took the first step")),
      el("div", { class: "funnel" }, ...steps));
  }
  function renderProperties(keys, values) {
    const card = el("div", { class: "card", "data-card": "properties" },
      el("div", { class: "head" }, el("h2", {}, "Custom properties"),
        keys.results.length ? select("prop-key", keys.results.map((k) => [k.value, k.value + " (" + nf.format(k.visitors) + ")"]), state.prop,
          (v) => { state.prop = v; load(); }) : ""));
    if (!values) { card.append(el("p", { class: "muted" }, "No custom properties in this period.")); return card; }
    const rows = values.results.length ? values.results.map((r) => el("tr", { "data-value": r.value,
      onclick: () => addFilter("prop." + state.prop + ":is:" + r.value) },
      el("td", {}, r.value === "" ? "(none)" : r.value),
      el("td", { class: "n", "data-visitors": String(r.visitors) }, nf.format(r.visitors)),
      el("td", { class: "n" }, nf.format(r.events))))
      : [el("tr", {}, el("td", { class: "empty", colspan: "3" }, "No data"))];
    card.append(el("table", { "data-prop": state.prop }, el("thead", {}, el("tr", {}, el("th", {}, state.prop),
      el("th", { class: "n" }, "Visitors"), el("th", { class: "n" }, "Events"))), el("tbody", {}, ...rows)));
    return card;
  }
  // After the main view (it holds the credential's request budget): the site's goal and funnel
  // definitions, then goals, the funnel and the property keys together, then a key's values.
  async function loadConversions(base) {
    const defs = await api("/v1/goals", [["site_id", state.site]]);
    if (state.goal && !defs.goals.some((g) => g.id === state.goal)) state.goal = "";
    if (!defs.funnels.some((f) => f.id === state.funnel)) state.funnel = defs.funnels.length ? defs.funnels[0].id : "";
    const none = Promise.resolve(null);
    const [goals, breakdown, funnel, keys] = await Promise.all([
      defs.goals.length ? api("/v1/stats/goals", base) : none,
      state.goal ? api("/v1/stats/goals", base.concat([["goal", state.goal], ["property", state.goalBy], ["limit", "10"]])) : none,
      state.funnel ? api("/v1/stats/funnel", base.concat([["funnel", state.funnel], ["within", state.within]])) : none,
      api("/v1/stats/properties", base.concat([["limit", "50"]])),
    ]);
    if (!keys.results.some((k) => k.value === state.prop)) state.prop = keys.results.length ? keys.results[0].value : "";
    const values = state.prop ? await api("/v1/stats/breakdown", base.concat([["property", "prop." + state.prop], ["limit", "10"]])) : null;
    syncUrl();
    return [goals && renderGoals(defs, goals, breakdown, keys), funnel && renderFunnel(defs, funnel), renderProperties(keys, values)].filter(Boolean);
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
        api("/v1/stats/aggregate", comparedParams(base)),
        api("/v1/stats/timeseries", comparedParams(base)),
        ...TABLES.map(([p]) => api("/v1/stats/breakdown", comparedParams(base).concat([["property", p], ["limit", "10"]]))),
      ]);
      if (mine !== generation) return;
      renderKpis(agg);
      renderChart(ts);
      $("tables").replaceChildren(...TABLES.map(([p, title], i) => renderTable(p, title, tables[i])));
      const conversions = await loadConversions(base);
      if (mine !== generation) return;
      $("conversions").replaceChildren(...conversions);
      document.body.dataset.loaded = String(mine);
    } catch (e) {
      if (e.message !== "unauthorized") showError(e);
    } finally {
      if (mine === generation) delete document.body.dataset.loading;
    }
  }
  async function realtime() {
    if (!state.site || state.view !== "stats") return;
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

  // ---- admin view (admin tokens): sites, their keys and settings, credentials, the audit log.
  // Secrets (tokens, share links, HMAC secrets) come in the answer that created them and are
  // shown once, in a box the operator dismisses; nothing keeps them (no storage, no URL).
  const admin = { sites: [], credentials: [], audit: [] };
  // The HMAC secret just rotated, shown in its site's pane (which redraws after every change)
  // until hidden or another site is picked; held in memory only.
  let hmacSecret = null;
  let adminLoads = 0;
  const EDGE_URL_KEY = "ta-edge-url";
  const dtf = new Intl.DateTimeFormat("en", { dateStyle: "medium", timeStyle: "short" });
  const when = (secs) => (secs === null || secs === undefined ? "never" : dtf.format(new Date(secs * 1000)));
  const lines = (text) => text.split(/[\s,]+/).map((v) => v.trim()).filter(Boolean);

  // One admin request: the JSON answer, or an Error carrying the API's status, code, message
  // and the field (`part`) it is about.
  async function adminCall(method, path, body) {
    const headers = { Authorization: "Bearer " + state.token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    if (r.ok) return data;
    if (r.status === 401) { showLogin("That token was not accepted."); throw new Error("unauthorized"); }
    const e = new Error((data && data.message) || r.status + " " + r.statusText);
    e.status = r.status;
    e.part = (data && (data.part || data.parameter)) || "";
    throw e;
  }
  // Whether the signed-in token is an admin token (403: not one; 503: no registry).
  function isAdminToken() {
    if (state.share || !state.token) return Promise.resolve(false);
    return fetch("/v1/admin/sites", { headers: { Authorization: "Bearer " + state.token } }).then((r) => r.ok, () => false);
  }

  // A form's error: the API's message beside the form, and the field it names marked.
  function formError(form, e) {
    const box = form.querySelector("[data-error]");
    for (const f of form.querySelectorAll("[aria-invalid]")) f.removeAttribute("aria-invalid");
    if (!e) { box.hidden = true; box.textContent = ""; delete box.dataset.part; return; }
    if (e.message === "unauthorized") return;
    box.hidden = false;
    box.textContent = e.message;
    box.dataset.part = e.part || "";
    const field = e.part && form.querySelector(`[name="${CSS.escape(e.part)}"]`);
    if (field) { field.setAttribute("aria-invalid", "true"); field.focus(); }
  }
  function adminError(e) {
    if (e && e.message === "unauthorized") return;
    $("admin-error").hidden = !e;
    $("admin-error").textContent = e ? String(e.message || e) : "";
  }

  // Copy to the clipboard; where the Clipboard API is missing (plain http other than
  // localhost) or refused, through a selected textarea.
  async function copyText(text, button) {
    let copied = false;
    try { await navigator.clipboard.writeText(text); copied = true; } catch (_) {
      const t = el("textarea", { readonly: "", class: "offscreen" });
      t.value = text;
      document.body.append(t);
      t.select();
      try { copied = document.execCommand("copy"); } catch (_) { copied = false; }
      t.remove();
    }
    const label = button.dataset.label || (button.dataset.label = button.textContent);
    button.textContent = copied ? "Copied" : "Copy failed: select the text";
    button.dataset.copied = String(copied);
    setTimeout(() => { button.textContent = label; }, 1500);
  }

  // A one-time secret in `box`, with a copy button and the note that it is not shown again.
  function showSecret(box, title, value, note, onHide) {
    box.replaceChildren(
      el("div", { class: "head" }, el("h3", {}, title),
        el("button", { type: "button", class: "link", onclick: () => { hideSecret(box); if (onHide) onHide(); } }, "Hide")),
      el("p", { class: "once" }, "Shown once: copy it now. Only a hash (or the edges' copy) is kept; it cannot be shown again."),
      el("div", { class: "copyable" }, el("code", { "data-secret": value }, value),
        el("button", { type: "button", onclick: (ev) => copyText(value, ev.currentTarget) }, "Copy")),
      ...(note ? [el("p", { class: "muted" }, note)] : []));
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" });
  }
  function hideSecret(box) { box.hidden = true; box.replaceChildren(); }

  // A button that asks before it acts: the question, then "yes" or "cancel".
  function confirmButton(label, question, yes, action, attrs) {
    const wrap = el("span", { class: "confirm" });
    const ask = () => wrap.replaceChildren(el("span", { class: "question" }, question + " "),
      el("button", { type: "button", class: "danger", "data-confirm": "yes", onclick: action }, yes), " ",
      el("button", { type: "button", onclick: idle }, "Cancel"));
    const idle = () => wrap.replaceChildren(el("button", Object.assign({ type: "button", onclick: ask }, attrs || {}), label));
    idle();
    return wrap;
  }

  async function loadAdmin() {
    try {
      const [sites, credentials, audit] = await Promise.all([
        adminCall("GET", "/v1/admin/sites"),
        adminCall("GET", "/v1/admin/credentials"),
        adminCall("GET", "/v1/admin/audit?limit=100"),
      ]);
      admin.sites = sites.sites;
      admin.credentials = credentials.credentials;
      admin.audit = audit.entries;
      adminError(null);
      renderAdmin();
    } catch (e) {
      adminError(e);
    } finally {
      document.body.dataset.adminLoaded = String(++adminLoads);
    }
  }
  function renderAdmin() {
    if (!admin.sites.some((x) => x.id === state.site)) state.site = admin.sites.length ? admin.sites[0].id : "";
    syncUrl();
    $("admin-sites").replaceChildren(...(admin.sites.length ? admin.sites.map((x) => el("tr", {
      "data-site": x.id, class: x.id === state.site ? "selected" : "",
      onclick: () => { if (state.site !== x.id) hmacSecret = null; state.site = x.id; renderAdmin(); },
    },
    el("td", { class: "id", title: x.id }, x.id),
    el("td", { "data-origins": x.allowed_origins.join(" ") }, x.allowed_origins.join(", ") || "–"),
    el("td", { class: "n" }, String(x.ingest_keys.length)),
    el("td", { class: "n" }, x.require_signature ? "required" : x.has_hmac_secret ? "optional" : "no")))
      : [el("tr", {}, el("td", { class: "empty", colspan: "4" }, "No sites yet: create the first one below."))]));
    renderSite(admin.sites.find((x) => x.id === state.site));
    renderCredentials();
    renderAudit();
  }

  // ---- one site: settings, ingest keys and the tracker snippet, HMAC secret, delete
  function currentKey(site) {
    const live = site.ingest_keys.filter((k) => k.not_after === null);
    return (live.length ? live : site.ingest_keys).slice().sort((a, b) => b.created_at - a.created_at)[0];
  }
  // The tracker's script tag, as edge/tracker/t.js documents it.
  function snippet(site) {
    const edge = (localStorage.getItem(EDGE_URL_KEY) || "").trim().replace(/\/+$/, "") || "https://EDGE";
    const key = currentKey(site);
    return `<script defer src="${edge}/t.js" data-site="${site.id}" data-key="${key ? key.key : ""}"></script>`;
  }
  function renderSite(site) {
    $("admin-site").hidden = !site;
    if (!site) { $("admin-site-body").replaceChildren(); return; }
    const field = (label, input) => el("label", {}, label + " ", input);
    const check = (name, on, label) => { const c = el("input", { type: "checkbox", name }); c.checked = on; return el("label", { class: "check" }, c, " " + label); };
    const number = (name, v) => { const i = el("input", { type: "number", name, min: "1", step: "1", placeholder: "edge default", "aria-label": name.replace(/_/g, " ") }); i.value = v === null ? "" : String(v); return i; };
    const area = (name, list, placeholder) => { const t = el("textarea", { name, rows: "2", placeholder, "aria-label": name.replace(/_/g, " ") }); t.value = list.join("\n"); return t; };

    const settings = el("form", { id: "site-settings", class: "form", novalidate: "" },
      field("Allowed origins", area("allowed_origins", site.allowed_origins, "https://example.com (one per line, or *)")),
      field("Hostnames", area("hostnames", site.hostnames, "example.com, *.example.com (empty: any)")),
      el("div", { class: "row" },
        field("Rate limit (events/s per visitor IP)", number("rate_limit_per_sec", site.rate_limit_per_sec)),
        field("Burst", number("rate_limit_burst", site.rate_limit_burst))),
      check("respect_dnt", site.respect_dnt, "Respect Do Not Track and Global Privacy Control"),
      check("require_signature", site.require_signature, "Require an HMAC signature (server-side senders only)"),
      el("div", { class: "actions" }, el("button", { type: "submit" }, "Save settings"), el("span", { class: "muted", "data-saved": "" })),
      el("p", { class: "error", "data-error": "", hidden: "" }));
    settings.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = settings.elements;
      const limit = (v) => (v.trim() === "" ? null : Number(v));
      formError(settings, null);
      const form = {
        allowed_origins: lines(f.allowed_origins.value), hostnames: lines(f.hostnames.value),
        rate_limit_per_sec: limit(f.rate_limit_per_sec.value), rate_limit_burst: limit(f.rate_limit_burst.value),
        respect_dnt: f.respect_dnt.checked, require_signature: f.require_signature.checked,
      };
      // Only what changed, so the audit log says what this save changed.
      const patch = Object.fromEntries(Object.entries(form).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(site[k])));
      const status = settings.querySelector("[data-saved]");
      if (!Object.keys(patch).length) { status.textContent = "Nothing changed."; return; }
      try {
        await adminCall("PATCH", "/v1/admin/sites/" + encodeURIComponent(site.id), patch);
        await loadAdmin();
        const saved = document.querySelector("#site-settings [data-saved]");
        if (saved) saved.textContent = "Saved.";
      } catch (e) { formError(settings, e); }
    });

    const edge = el("input", { id: "edge-url", type: "url", placeholder: "https://edge.example.com", "aria-label": "Edge public URL" });
    edge.value = localStorage.getItem(EDGE_URL_KEY) || "";
    const code = el("pre", { id: "snippet", class: "snippet" }, snippet(site));
    edge.addEventListener("input", () => { localStorage.setItem(EDGE_URL_KEY, edge.value.trim()); code.textContent = snippet(site); });
    const keys = el("table", { "data-keys": site.id }, el("thead", {}, el("tr", {}, el("th", {}, "Ingest key"), el("th", {}, "Created"), el("th", {}, "Accepted until"))),
      el("tbody", {}, ...site.ingest_keys.map((k) => el("tr", { "data-key": k.key, "data-not-after": k.not_after === null ? "" : String(k.not_after) },
        el("td", {}, el("code", {}, k.key)), el("td", {}, when(k.created_at)),
        el("td", { class: k.not_after === null ? "" : "ending" }, k.not_after === null ? "current" : when(k.not_after) + " (rotated out)")))));
    const grace = el("input", { id: "grace-hours", name: "grace_secs", type: "number", min: "0", max: "720", step: "any", "aria-label": "Grace period in hours" });
    grace.value = "24";
    const rotate = el("form", { id: "rotate-key", class: "form inline", novalidate: "" },
      el("label", {}, "Keep the old key for ", grace, " hours"), " ",
      el("button", { type: "submit" }, "Rotate key"),
      el("p", { class: "error", "data-error": "", hidden: "" }));
    rotate.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      formError(rotate, null);
      const hours = Number(grace.value);
      if (grace.value.trim() === "" || !Number.isFinite(hours)) { formError(rotate, { message: "The grace period is a number of hours (0 to 720).", part: "grace_secs" }); return; }
      try {
        await adminCall("POST", "/v1/admin/sites/" + encodeURIComponent(site.id) + "/rotate-key", { grace_secs: Math.round(hours * 3600) });
        await loadAdmin();
      } catch (e) { formError(rotate, e); }
    });

    const hmacError = el("p", { class: "error", hidden: "" });
    const rotateHmac = async () => {
      hmacError.hidden = true;
      try {
        const r = await adminCall("POST", "/v1/admin/sites/" + encodeURIComponent(site.id) + "/rotate-hmac-secret");
        hmacSecret = { site: r.site_id, value: r.hmac_secret };
        await loadAdmin();
      } catch (e) { if (e.message !== "unauthorized") { hmacError.hidden = false; hmacError.textContent = e.message; } }
    };
    const hmac = site.has_hmac_secret
      ? confirmButton("Rotate HMAC secret", "Signed senders must switch to the new secret at once. Rotate?", "Rotate", rotateHmac, { id: "rotate-hmac" })
      : el("button", { id: "rotate-hmac", type: "button", onclick: rotateHmac }, "Generate HMAC secret");
    const hmacBox = el("div", { id: "hmac-secret", class: "secret", hidden: "" });
    if (hmacSecret && hmacSecret.site === site.id) {
      showSecret(hmacBox, "HMAC secret of " + site.id, hmacSecret.value,
        "Server-side senders sign events with it; the previous secret no longer verifies.", () => { hmacSecret = null; });
    }

    const deleteError = el("p", { class: "error", hidden: "" });
    const remove = confirmButton("Delete site", `Delete ${site.id}, its keys, share links and read grants? Its stored events stay.`, "Delete site", async () => {
      try {
        await adminCall("DELETE", "/v1/admin/sites/" + encodeURIComponent(site.id));
        hmacSecret = null;
        state.site = "";
        await loadAdmin();
      } catch (e) { if (e.message !== "unauthorized") { deleteError.hidden = false; deleteError.textContent = e.message; } }
    }, { id: "delete-site", class: "danger" });

    $("admin-site-body").replaceChildren(
      el("div", { class: "head" }, el("h2", { "data-site-id": site.id }, site.id), el("span", { class: "muted" }, "created " + when(site.created_at))),
      settings,
      el("h3", {}, "Ingest keys and tracker snippet"),
      keys,
      el("label", { class: "stack" }, "Edge public URL (remembered in this browser)", edge),
      el("div", { class: "copyable" }, code, el("button", { id: "copy-snippet", type: "button", onclick: (ev) => copyText(code.textContent, ev.currentTarget) }, "Copy")),
      el("p", { class: "muted" }, "Paste it into every page of the site. The key is public by design; rotate it when it leaks into a site you do not run."),
      rotate,
      el("h3", {}, "HMAC secret"),
      el("p", { class: "muted", "data-hmac": String(site.has_hmac_secret) }, site.has_hmac_secret
        ? "This site has an HMAC secret" + (site.require_signature ? " and accepts signed events only." : "; unsigned browser events are accepted too.")
        : "No HMAC secret: only browser events (no server-side signing)."),
      hmac, hmacError, hmacBox,
      el("h3", {}, "Delete"),
      remove, deleteError);
  }

  // ---- credentials
  const KIND_NAMES = { read: "Read token", share: "Share link", edge: "Edge credential", admin: "Admin token" };
  function renderCredentials() {
    const rows = admin.credentials.map((c) => el("tr", { "data-credential": c.id, "data-kind": c.kind, "data-label": c.label },
      el("td", { title: c.id }, KIND_NAMES[c.kind] || c.kind),
      el("td", {}, c.sites.length ? c.sites.join(", ") : "all"),
      el("td", {}, c.label || "–"),
      el("td", { "data-expires": c.expires_at === null ? "" : String(c.expires_at) }, when(c.expires_at)),
      el("td", { "data-password": String(c.has_password) }, c.has_password ? "yes" : "no"),
      el("td", {}, c.filter || "–"),
      el("td", {}, when(c.created_at)),
      el("td", { class: "act" }, confirmButton("Revoke", "Revoke it now?", "Revoke", async () => {
        try { await adminCall("DELETE", "/v1/admin/credentials/" + encodeURIComponent(c.id)); await loadAdmin(); } catch (e) { adminError(e); }
      }, { class: "danger", "data-revoke": c.id }))));
    $("admin-credentials").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: "8" }, "No credentials"))]));
    const select = $("credential-create").elements.sites;
    const chosen = new Set([...select.selectedOptions].map((o) => o.value));
    select.replaceChildren(...admin.sites.map((x) => { const o = el("option", { value: x.id }, x.id); o.selected = chosen.has(x.id); return o; }));
    credentialKind();
  }
  // Show the fields the chosen kind takes: sites for read tokens (several) and share links
  // (one); password and filter for share links.
  function credentialKind() {
    const form = $("credential-create");
    const kind = form.elements.kind.value;
    for (const l of form.querySelectorAll("[data-for]")) l.hidden = !l.dataset.for.split(" ").includes(kind);
    form.elements.sites.multiple = kind === "read";
    form.elements.sites.size = 3;
  }
  $("credential-create").elements.kind.addEventListener("change", credentialKind);
  $("credential-create").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    const f = form.elements;
    const kind = f.kind.value;
    const body = { kind };
    if (kind === "read" || kind === "share") body.sites = [...f.sites.selectedOptions].map((o) => o.value);
    if (f.label.value.trim()) body.label = f.label.value.trim();
    if (kind === "share" && f.password.value) body.password = f.password.value;
    if (kind === "share" && f.filter.value.trim()) body.filter = f.filter.value.trim();
    if (f.expires_at.value) body.expires_at = Math.floor(new Date(f.expires_at.value).getTime() / 1000);
    formError(form, null);
    hideSecret($("credential-secret"));
    try {
      const r = await adminCall("POST", "/v1/admin/credentials", body);
      const c = r.credential;
      const share = c.kind === "share";
      const value = share ? location.origin + "/?share=" + encodeURIComponent(r.secret) : r.secret;
      f.password.value = f.label.value = f.filter.value = f.expires_at.value = "";
      await loadAdmin();
      showSecret($("credential-secret"), (KIND_NAMES[c.kind] || c.kind) + (c.sites.length ? " for " + c.sites.join(", ") : "") + (c.label ? " (" + c.label + ")" : ""), value,
        share ? (c.has_password ? "Readers also need the password you set; send it separately." : "Anyone with this link reads the site's stats.")
          : c.kind === "read" ? "Sign in to this dashboard with it, or send it as Authorization: Bearer." : c.kind === "edge" ? "Give it to an edge or loader (it reads the signed registry snapshot)." : "It can change every site and credential.");
      $("credential-secret").dataset.kind = c.kind;
      $("credential-secret").dataset.credential = c.id;
    } catch (e) { formError(form, e); }
  });

  // ---- audit log
  function renderAudit() {
    const labels = new Map(admin.credentials.map((c) => [c.id, c.label]));
    const rows = admin.audit.map((a) => el("tr", { "data-seq": String(a.seq), "data-action": a.action, "data-target": a.target },
      el("td", { class: "when" }, when(a.at)),
      el("td", { title: a.actor, "data-actor": a.actor }, labels.get(a.actor) || a.actor),
      el("td", {}, a.action),
      el("td", {}, a.target),
      el("td", { class: "detail" }, a.detail && Object.keys(a.detail).length ? JSON.stringify(a.detail) : "")));
    $("admin-audit").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: "5" }, "No changes yet"))]));
  }

  $("site-create").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    const f = form.elements;
    formError(form, null);
    hideSecret($("site-create-secret"));
    try {
      const r = await adminCall("POST", "/v1/admin/sites", {
        id: f.id.value.trim(), allowed_origins: lines(f.allowed_origins.value), hostnames: lines(f.hostnames.value),
        hmac_secret: f.hmac_secret.checked,
      });
      form.reset();
      state.site = r.site.id;
      await loadAdmin();
      if (r.hmac_secret) showSecret($("site-create-secret"), "HMAC secret of " + r.site.id, r.hmac_secret, "Server-side senders sign events with it.");
    } catch (e) { formError(form, e); }
  });

  // ---- sign-in, share-link password, views
  function showLogin(message) {
    document.body.dataset.view = "login";
    $("main").hidden = true;
    $("admin").hidden = true;
    $("views").hidden = true;
    $("share-login").hidden = true;
    $("login").hidden = false;
    $("logout").hidden = true;
    $("login-error").hidden = !message;
    $("login-error").textContent = message || "";
    stopRealtime();
  }
  // The share link has a password: ask for it (again, when the one given was refused).
  function showSharePassword() {
    const refused = !!state.sharePassword;
    if (refused) { sessionStorage.removeItem("ta-share-password:" + state.share); state.sharePassword = ""; }
    document.body.dataset.view = "login";
    $("main").hidden = true;
    $("login").hidden = true;
    const form = $("share-login");
    if (!form.hidden && !refused) return;
    form.hidden = false;
    $("share-login-error").hidden = !refused;
    $("share-login-error").textContent = refused ? "That password was not accepted." : "";
    $("share-password").value = "";
    $("share-password").focus();
    stopRealtime();
  }
  $("share-login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.sharePassword = $("share-password").value;
    sessionStorage.setItem("ta-share-password:" + state.share, state.sharePassword);
    start();
  });
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("ta-token", state.token);
    start();
  });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem("ta-token"); state.token = ""; showLogin(); });
  $("site").addEventListener("change", (e) => {
    state.site = e.target.value;
    state.filters = [];
    state.goal = state.funnel = state.prop = "";
    load();
    realtime();
  });
  $("period").addEventListener("change", (e) => { state.period = e.target.value; load(); });
  $("compare").value = state.compare;
  $("compare").addEventListener("change", (e) => { state.compare = e.target.value; load(); });
  for (const tab of document.querySelectorAll("#views [data-view]")) {
    tab.addEventListener("click", () => { if (state.view !== tab.dataset.view) { state.view = tab.dataset.view; start(); } });
  }

  let realtimeTimer = 0;
  function stopRealtime() { clearInterval(realtimeTimer); realtimeTimer = 0; }

  async function start() {
    if (!state.share && !state.token) { showLogin(); return; }
    let sites, isAdmin;
    try {
      [sites, isAdmin] = await Promise.all([api("/v1/sites", []).then((b) => b.sites), isAdminToken()]);
    } catch (e) { if (e.message !== "unauthorized") showLogin(String(e.message)); return; }
    if (!sites.length && !isAdmin) { showLogin("This credential reads no site."); return; }
    if (!isAdmin) state.view = "stats";
    // An admin of a registry with no site yet starts by creating one.
    else if (!sites.length) state.view = "admin";
    state.sites = sites;
    $("views").hidden = !isAdmin;
    for (const tab of document.querySelectorAll("#views [data-view]")) tab.setAttribute("aria-pressed", String(tab.dataset.view === state.view));
    document.body.dataset.view = state.view;
    $("login").hidden = true;
    $("share-login").hidden = true;
    $("logout").hidden = !!state.share;
    $("main").hidden = state.view !== "stats";
    $("admin").hidden = state.view !== "admin";
    stopRealtime();
    if (state.view === "admin") { loadAdmin(); return; }
    if (!sites.includes(state.site)) state.site = sites[0];
    $("site").replaceChildren(...sites.map((s) => el("option", { value: s }, s)));
    $("site").value = state.site;
    $("site").disabled = sites.length === 1;
    $("period").value = state.period;
    load();
    realtime();
    realtimeTimer = setInterval(realtime, 10000);
  }
  start();
})();
