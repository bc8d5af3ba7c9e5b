/* consent_widget widget: progressive enhancement of the signup form.
 *
 * Without this script the form posts normally. With it, the form is sent with fetch, which also
 * works inside <iframe sandbox="allow-scripts"> (where forms cannot be submitted), and the answer
 * is shown in the page's live regions. The page's height is posted to the embedding page so it
 * can size the iframe. No cookie, no storage. */
(function () {
  "use strict";

  // The embedding site, when the server knows it is one of the campaign's sites. Otherwise "*":
  // the message is only a number, and the page's frame-ancestors already limits who can be our
  // parent to the campaign's sites (a sandboxed frame of WordPress cannot tell us which one).
  const main = document.querySelector("main[data-parent]");
  const parentOrigin = main ? main.dataset.parent : "*";
  // WordPress puts a secret in the fragment of the sandboxed frame's URL (#?secret=...) and
  // resizes only the frame whose secret comes back with the height.
  const secret = (/[#&?]secret=([A-Za-z0-9]{1,32})/.exec(window.location.hash) || [])[1];
  let lastHeight = 0;

  function postHeight() {
    if (window.parent === window) { return; }
    const height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (height === lastHeight) { return; }
    lastHeight = height;
    window.parent.postMessage({ type: "consent-widget:height", height: height }, parentOrigin);
    if (secret) {
      window.parent.postMessage({ message: "height", value: height, secret: secret }, parentOrigin);
    }
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

  function send(event) {
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
  }

  form.addEventListener("submit", send);
  // In <iframe sandbox="allow-scripts"> a form is never submitted, so no submit event fires:
  // the button's click (also what Enter in a field triggers) must send it.
  button.addEventListener("click", send);
})();
