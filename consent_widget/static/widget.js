/* consent_widget widget: progressive enhancement of the signup form.
 *
 * Without this script the form posts normally. With it, the form is sent with fetch, which also
 * works inside <iframe sandbox="allow-scripts"> (where forms cannot be submitted), and the answer
 * is shown in the page's live regions. The page's height is posted to the embedding page so it
 * can size the iframe; the loader checks our origin on its side. No cookie, no storage. */
(function () {
  "use strict";

  function postHeight() {
    if (window.parent === window) { return; }
    const height = Math.ceil(document.documentElement.scrollHeight);
    // Our loader's format, then WordPress's (oEmbed content shown in a sandboxed iframe).
    window.parent.postMessage({ type: "consent-widget:height", height: height }, "*");
    window.parent.postMessage({ message: "height", value: height }, "*");
  }

  if (typeof ResizeObserver === "function") {
    new ResizeObserver(postHeight).observe(document.documentElement);
  } else {
    window.addEventListener("resize", postHeight);
  }
  postHeight();

  const form = document.getElementById("signup");
  if (!form) { return; }
  const summary = document.getElementById("error-summary");
  const status = document.getElementById("widget-status");
  const button = form.querySelector("button[type=submit]");
  // Where a message about a field takes the reader: the field itself, or the first box.
  const anchors = { email: "email", newsletter: "newsletter", social_matching: "social_matching-0" };

  // The loader passes ?origin=; a plain iframe (a site builder's embed block) only has the referrer.
  const origin = form.elements.namedItem("origin");
  if (origin && !origin.value && document.referrer) {
    try { origin.value = new URL(document.referrer).origin; } catch (error) { origin.value = ""; }
  }

  function clearErrors() {
    summary.replaceChildren();
    form.querySelectorAll(".field-error").forEach(function (element) { element.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (element) {
      element.removeAttribute("aria-invalid");
    });
  }

  function showErrors(errors) {
    const heading = document.createElement("h2");
    heading.textContent = form.dataset.errorTitle;
    const list = document.createElement("ul");
    Object.keys(errors).forEach(function (name) {
      const messages = errors[name];
      const target = document.getElementById(name + "-error");
      if (target) { target.textContent = messages.join(" "); }
      const input = document.getElementById(name);
      if (input && input.type !== "hidden") { input.setAttribute("aria-invalid", "true"); }
      messages.forEach(function (message) {
        const item = document.createElement("li");
        if (anchors[name] && document.getElementById(anchors[name])) {
          const link = document.createElement("a");
          link.href = "#" + anchors[name];
          link.textContent = message;
          item.appendChild(link);
        } else {
          item.textContent = message;
        }
        list.appendChild(item);
      });
    });
    summary.replaceChildren(heading, list);
    summary.focus();
  }

  function showSuccess(message) {
    const heading = document.createElement("h2");
    heading.textContent = form.dataset.successTitle;
    const text = document.createElement("p");
    text.textContent = message;
    form.hidden = true;
    status.replaceChildren(heading, text);
    status.focus();
  }

  summary.addEventListener("click", function (event) {
    const link = event.target.closest("a[href^='#']");
    const field = link && document.getElementById(link.getAttribute("href").slice(1));
    if (field) {
      event.preventDefault();
      field.focus();
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (button.disabled) { return; }
    clearErrors();
    button.disabled = true;
    const label = button.textContent;
    button.textContent = form.dataset.sending;
    fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { Accept: "application/json" },
      credentials: "omit",
      cache: "no-store",
    })
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        if (answer.ok) {
          showSuccess(answer.message);
        } else {
          showErrors(answer.errors || {});
        }
      })
      .catch(function () {
        showErrors({ form: [form.dataset.networkError] });
      })
      .finally(function () {
        button.disabled = false;
        button.textContent = label;
        postHeight();
      });
  });
})();
