/* consent_widget loader: puts the campaign's widget, in an iframe, where the snippet is.
 *   <script src="BASE/embed.js" data-campaign="SLUG" async></script>
 * or, for site builders that strip attributes from scripts, a placeholder anywhere on the page:
 *   <div data-consent-campaign="SLUG"><a href="BASE/w/SLUG">Sign up</a></div>
 * Optional attributes: data-lang="fr|en", data-title="title of the frame".
 * Sets no cookie, uses no storage and asks nothing of any host but the widget's own. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) { return; }
  var base = new URL(script.src).origin;
  var frames = [];

  function attr(element, name) { return element.getAttribute("data-" + name); }

  function mount(anchor, slug, inside) {
    if (!slug || attr(anchor, "consent-mounted")) { return; }
    anchor.setAttribute("data-consent-mounted", "1");
    var lang = attr(anchor, "lang");
    var french = /^fr/i.test(lang || document.documentElement.lang || "");
    var frame = document.createElement("iframe");
    frame.src = base + "/w/" + encodeURIComponent(slug) + "?origin=" +
      encodeURIComponent(location.origin) + (lang ? "&lang=" + encodeURIComponent(lang) : "");
    frame.title = attr(anchor, "title") ||
      (french ? "Inscription et consentements" : "Sign-up and consent");
    // Until the widget says how tall it is; then its own height, so the host page never scrolls
    // inside the frame.
    frame.style.cssText = "display:block;width:100%;max-width:40rem;height:36rem;border:0";
    frames.push(frame);
    if (inside) {
      // A placeholder's own content (a plain link) is the fallback for browsers without scripts.
      anchor.textContent = "";
      anchor.appendChild(frame);
    } else {
      anchor.parentNode.insertBefore(frame, anchor.nextSibling);
    }
  }

  function mountAll() {
    var holders = document.querySelectorAll("[data-consent-campaign]");
    for (var i = 0; i < holders.length; i++) {
      mount(holders[i], attr(holders[i], "consent-campaign"), true);
    }
  }

  addEventListener("message", function (event) {
    var data = event.data;
    // Only the widget's own origin may resize, and only the frame that sent the message.
    if (event.origin !== base || !data || data.type !== "consent-widget:height") { return; }
    for (var i = 0; i < frames.length; i++) {
      if (frames[i].contentWindow === event.source) {
        frames[i].style.height = Math.max(80, Math.min(5000, +data.height || 0)) + "px";
      }
    }
  });

  mount(script, attr(script, "campaign"), false);
  mountAll();
  // An async script may run before the rest of the page is parsed.
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", mountAll);
  }
})();
