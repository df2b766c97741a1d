// Small behaviours shared by every page. htmx sends the CSRF token from <body hx-headers>.
document.addEventListener("DOMContentLoaded", () => {
  if (window.htmx) {
    // 422 answers carry the form back with its messages and the typed text: swap them in.
    htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[23]..", swap: true },
      { code: "422", swap: true },
      // 409: the request could not be applied as things stand (e.g. a task ranked twice).
      { code: "409", swap: true },
      { code: "[45]..", swap: false, error: true },
    ];
  }
});

document.addEventListener("htmx:responseError", (event) => {
  const status = event.detail.xhr.status;
  const target = document.getElementById("htmx-error");
  const text = status === 403
    ? "You are not allowed to do that (or your session expired: reload and log in)."
    : `The server answered ${status}. Nothing was lost; try again.`;
  if (target) {
    target.textContent = text;
    target.hidden = false;
  } else {
    window.alert(text);
  }
});

// Drafts: every [data-draft] textarea is saved by htmx as the trainer types. Until the save
// has answered, leaving the page asks first.
let unsavedDraft = false;
document.addEventListener("input", (event) => {
  if (!event.target.matches || !event.target.matches("textarea[data-draft]")) return;
  unsavedDraft = true;
  const status = event.target.form && event.target.form.querySelector("#draft-status, .draft-status");
  if (status) status.textContent = "Unsaved changes…";
});
document.addEventListener("htmx:afterRequest", (event) => {
  const element = event.detail.elt;
  if (!event.detail.successful || !element.matches) return;
  // A saved draft, or a sent turn (a form holding a draft box); other forms (feedback) do not
  // save what is typed in the editor.
  const savesDraft = element.matches("textarea[data-draft]")
    || (element.matches("form") && element.querySelector("textarea[data-draft]"));
  if (savesDraft) unsavedDraft = false;
});
window.addEventListener("beforeunload", (event) => {
  if (unsavedDraft) {
    event.preventDefault();
    event.returnValue = "";
  }
});

// "Use" on a suggestion puts its text into the composer, remembers which sample it came from
// (so the saved turn records its origin and edit distance) and saves the draft.
document.addEventListener("click", (event) => {
  const button = event.target.closest(".use-suggestion");
  if (!button) return;
  const textarea = document.getElementById("composer-text");
  const sample = document.getElementById("composer-sample");
  if (!textarea || !sample) return;
  textarea.value = button.closest(".suggestion").querySelector(".suggestion-text").textContent;
  sample.value = button.dataset.sampleId;
  textarea.dispatchEvent(new Event("input", { bubbles: true }));
  textarea.focus();
});

// Keyboard shortcuts (no htmx event filters: they are evaluated code, which the
// Content-Security-Policy forbids). An element with data-shortcut="ctrl+Enter" (or "alt+s")
// receives a "shortcut" event when those keys are pressed, inside data-shortcut-from when it
// names an element; its hx-trigger lists "shortcut".
document.addEventListener("keydown", (event) => {
  for (const element of document.querySelectorAll("[data-shortcut]")) {
    const [modifier, key] = element.dataset.shortcut.split("+");
    if (event.key !== key || !event[`${modifier}Key`]) continue;
    const from = element.dataset.shortcutFrom;
    if (from && !(event.target.closest && event.target.closest(from))) continue;
    event.preventDefault();
    element.dispatchEvent(new CustomEvent("shortcut", { bubbles: false }));
  }
});
