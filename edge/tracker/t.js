/*! Tiny Analytics tracker — first-party, no cookies, no storage, no third-party code.
 *
 * <script defer src="https://EDGE/t.js" data-site="SITE_ID" data-key="PUBLIC_KEY"
 *         data-outbound data-downloads data-respect-dnt data-hash data-404></script>
 *
 * - a pageview on load and on every single-page-app navigation (history.pushState/popstate);
 * - data-hash: the app routes by the URL fragment (/#/settings): the route is part of the page
 *   (the edge keeps a fragment starting with / or !/, without its own ?query), and every
 *   hashchange is a navigation;
 * - data-404: this page is a "not found" page: a "404" custom event follows the pageview (an
 *   app's own not-found route calls ta("404") instead); break 404s down by page with
 *   filter=event_name:is:404;
 * - custom events: ta("signup", {plan: "pro"}) (calls made before the script loaded are queued
 *   by the stub: window.ta = window.ta || function () { (ta.q = ta.q || []).push(arguments) });
 * - data-outbound: clicks on links to other hosts send "outbound_link" {url};
 * - data-downloads: clicks on file links send "file_download" {url};
 * - data-respect-dnt: nothing is sent when the browser sends DNT or Global Privacy Control;
 * - engagement: when a page is hidden or left (visibilitychange, pagehide) and before an SPA
 *   navigation's pageview, an "engagement" event reports the page's engaged time since the
 *   last report (ms the page was visible with the visitor active: some input in the last
 *   minute, the load counting as input) and its deepest scroll so far (percent). Not sent when
 *   nothing changed since the last one. Engagement events count as nothing themselves: they
 *   give time on page and scroll depth.
 * Events go to data-api (default: the origin of this script) as text/plain with sendBeacon (no
 * CORS preflight), falling back to fetch keepalive.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var d = script.dataset;
  var site = d.site, key = d.key;
  var api = (d.api || new URL(script.src).origin).replace(/\/$/, "");
  var endpoint = api + "/v1/collect?key=" + encodeURIComponent(key || "");
  var nav = navigator;
  var optedOut = "respectDnt" in d &&
    (nav.doNotTrack === "1" || window.doNotTrack === "1" || nav.globalPrivacyControl === true);
  var lastPath = null;
  var hashRouting = "hash" in d;

  function send(name, props, revenue, engagement) {
    if (optedOut || !site || !key) return;
    var event = {
      site_id: site,
      event_name: name,
      url: engagement ? engagement.url : location.href,
      referrer: document.referrer || "",
      props: props || {}
    };
    if (revenue) event.revenue = revenue;
    if (engagement) {
      event.engaged_ms = engagement.ms;
      event.scroll_depth = engagement.depth;
    }
    if (hashRouting) event.hash = true;
    var body = JSON.stringify(event);
    var sent = false;
    try {
      sent = nav.sendBeacon && nav.sendBeacon(endpoint, new Blob([body], { type: "text/plain" }));
    } catch (e) { sent = false; }
    if (!sent && window.fetch) {
      fetch(endpoint, {
        method: "POST", body: body, keepalive: true, credentials: "omit",
        headers: { "Content-Type": "text/plain" }
      }).catch(function () {});
    }
  }

  // Engagement of the current page: engaged ms not yet reported, the running stretch, the
  // deepest scroll and the last one reported.
  var IDLE_MS = 60000, MAX_ENGAGED_MS = 1800000;
  var pageUrl = null, engaged = 0, since = null, lastInput = 0, depth = 0, sentDepth = -1;

  function now() { return Date.now(); }

  // Add the running stretch (up to a minute after the last input) to `engaged`; it goes on
  // only while the page is visible and the visitor active.
  function tally() {
    var t = now(), end = Math.min(t, lastInput + IDLE_MS);
    if (since !== null && end > since) engaged += end - since;
    since = document.visibilityState === "visible" && t < lastInput + IDLE_MS ? t : null;
  }

  function active() {
    lastInput = now();
    if (since === null && document.visibilityState === "visible") since = lastInput;
  }

  function measureScroll() {
    var el = document.documentElement, body = document.body;
    var height = Math.max(el.scrollHeight, body ? body.scrollHeight : 0);
    var seen = (window.scrollY || el.scrollTop || 0) + window.innerHeight;
    var p = height > 0 ? Math.round(Math.min(1, seen / height) * 100) : 100;
    if (p > depth) depth = p;
  }

  // Report the current page's engagement, if anything changed since the last report.
  function engagement() {
    if (pageUrl === null) return;
    tally();
    measureScroll();
    if (engaged === 0 && depth === sentDepth) return;
    do {
      var ms = Math.min(engaged, MAX_ENGAGED_MS);
      send("engagement", null, null, { url: pageUrl, ms: ms, depth: depth });
      engaged -= ms;
    } while (engaged > 0);
    sentDepth = depth;
  }

  function pageview() {
    // The route as the edge keeps it: a fragment starting with / or !/, up to its own query.
    var route = hashRouting && /^#!?\//.test(location.hash) ? location.hash.split(/[?&]/)[0] : "";
    var path = location.pathname + location.search + route;
    if (path === lastPath) return; // replaceState of the same page, hash changes (unless routed)
    lastPath = path;
    engagement(); // of the page being left
    pageUrl = location.href;
    engaged = 0;
    depth = 0;
    sentDepth = -1;
    active();
    measureScroll();
    send("pageview");
  }

  ["scroll", "keydown", "pointerdown", "pointermove", "touchstart", "wheel"].forEach(function (type) {
    window.addEventListener(type, function () {
      active();
      if (type === "scroll") measureScroll();
    }, { passive: true, capture: true });
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") {
      active();
    } else {
      engagement();
      since = null;
    }
  });
  window.addEventListener("pagehide", function () {
    engagement();
    since = null;
  });

  // ta("purchase", {revenue: {amount: "19.90", currency: "EUR"}, plan: "pro"}): revenue goes
  // as the event's own field, checked here by the edge's rule (a beacon's 400 is invisible):
  // an amount of at most 14 + 4 digits, an upper-case ISO 4217 code; otherwise a console
  // warning and the event without it.
  function ta(name, props) {
    var clean = {}, revenue = null;
    for (var k in props || {}) {
      var v = props[k];
      if (k === "revenue" && v && typeof v === "object") {
        var amount = String(v.amount), currency = String(v.currency);
        if (/^[0-9]{1,14}(\.[0-9]{1,4})?$/.test(amount) && /^[A-Z]{3}$/.test(currency) && name !== "pageview") {
          revenue = { amount: amount, currency: currency };
        } else if (window.console) {
          console.warn("ta: revenue needs {amount: \"19.90\", currency: \"EUR\"} on a custom event; sent without it");
        }
      } else if (v !== null && typeof v !== "object") clean[k] = String(v);
    }
    send(String(name), clean, revenue);
  }

  var queued = (window.ta && window.ta.q) || [];
  window.ta = ta;
  for (var i = 0; i < queued.length; i++) ta.apply(null, queued[i]);

  var push = history.pushState;
  if (push) {
    history.pushState = function () {
      push.apply(this, arguments);
      pageview();
    };
    window.addEventListener("popstate", pageview);
  }
  if (hashRouting) window.addEventListener("hashchange", pageview);

  var FILES = /\.(pdf|zip|gz|tgz|rar|7z|dmg|exe|msi|pkg|deb|rpm|apk|iso|csv|xlsx?|docx?|pptx?|mp3|mp4|mov|avi|epub)$/i;
  if ("outbound" in d || "downloads" in d) {
    document.addEventListener("click", function (e) {
      var a = e.target && e.target.closest && e.target.closest("a[href]");
      if (!a || !/^https?:$/.test(a.protocol)) return;
      var link = a.href.split("#")[0];
      if ("downloads" in d && FILES.test(a.pathname)) {
        ta("file_download", { url: link });
      } else if ("outbound" in d && a.host !== location.host) {
        ta("outbound_link", { url: link });
      }
    }, true);
  }

  function landed() {
    pageview();
    if ("404" in d) ta("404");
  }
  if (document.visibilityState === "prerender") {
    document.addEventListener("visibilitychange", function once() {
      if (document.visibilityState !== "visible") return;
      document.removeEventListener("visibilitychange", once);
      landed();
    });
  } else {
    landed();
  }
})();
