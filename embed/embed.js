/* consent_widget loader: replaces each snippet with an iframe of the campaign's widget.
 * <script src="BASE/embed.js" data-campaign="SLUG" async></script>
 * Sets no cookie, uses no storage and loads nothing from any host but the widget's own. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) { return; }
  var base = new URL(script.src).origin;
  var frames = [];

  function mount(anchor, slug) {
    if (!slug || anchor.getAttribute("data-consent-mounted")) { return; }
    anchor.setAttribute("data-consent-mounted", "1");
    var src = base + "/w/" + encodeURIComponent(slug) +
      "?origin=" + encodeURIComponent(window.location.origin);
    var lang = anchor.getAttribute("data-lang");
    if (lang) { src += "&lang=" + encodeURIComponent(lang); }
    var frame = document.createElement("iframe");
    frame.src = src;
    frame.title = anchor.getAttribute("data-title") || "Consent";
    frame.style.cssText = "width:100%;max-width:40rem;border:0;height:32rem;display:block";
    frame.setAttribute("loading", "lazy");
    frames.push(frame);
    anchor.parentNode.insertBefore(frame, anchor.nextSibling);
  }

  window.addEventListener("message", function (event) {
    if (event.origin !== base || !event.data || event.data.type !== "consent-widget:height") { return; }
    for (var i = 0; i < frames.length; i++) {
      if (frames[i].contentWindow === event.source) {
        var height = Math.max(100, Math.min(4000, Number(event.data.height) || 0));
        frames[i].style.height = height + "px";
      }
    }
  });

  mount(script, script.getAttribute("data-campaign"));
  var holders = document.querySelectorAll("div[data-consent-campaign]");
  for (var i = 0; i < holders.length; i++) {
    mount(holders[i], holders[i].getAttribute("data-consent-campaign"));
  }
})();
