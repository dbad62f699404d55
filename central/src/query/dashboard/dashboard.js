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
    u.searchParams.set("site", state.site);
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
