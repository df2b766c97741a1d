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

// Toasts (#toast-region, filled out of band by the server or by showToast below): each one with
// data-timeout="<seconds>" goes away after that long, its undo with it; "×" dismisses it.
function scheduleToasts(root) {
  const scope = root && root.querySelectorAll ? root : document;
  const toasts = Array.from(scope.querySelectorAll(".toast[data-timeout]"));
  if (scope.matches && scope.matches(".toast[data-timeout]")) toasts.push(scope);
  toasts.forEach((toast) => {
    if (toast.dataset.scheduled) return;
    toast.dataset.scheduled = "true";
    window.setTimeout(() => toast.remove(), Number(toast.dataset.timeout) * 1000);
  });
}
document.addEventListener("click", (event) => {
  const close = event.target.closest && event.target.closest(".toast-close");
  if (close) close.closest(".toast").remove();
});
document.addEventListener("htmx:load", (event) => scheduleToasts(event.detail.elt));
// What only works with htmx running (polling, say) is sent hidden, with data-js-only: shown once
// htmx has loaded the content holding it.
document.addEventListener("htmx:load", (event) => {
  const root = event.detail.elt;
  const found = Array.from(root.querySelectorAll ? root.querySelectorAll("[data-js-only]") : []);
  if (root.matches && root.matches("[data-js-only]")) found.push(root);
  found.forEach((element) => {
    element.hidden = false;
  });
});
document.addEventListener("htmx:oobAfterSwap", (event) => scheduleToasts(event.detail.target));
document.addEventListener("DOMContentLoaded", () => scheduleToasts(document));

// An error toast where the trainer is looking (not at the top of a scrolled page).
window.tandemShowError = function showError(text) {
  const region = document.getElementById("toast-region");
  const inline = document.getElementById("htmx-error");
  if (region) {
    const toast = document.createElement("div");
    toast.className = "toast toast-error";
    toast.setAttribute("role", "alert");
    const span = document.createElement("span");
    span.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close link";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    toast.append(span, close);
    region.replaceChildren(toast);
  } else if (inline) {
    inline.textContent = text;
    inline.hidden = false;
  }
};

document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  const status = xhr.status;
  if (status === 401) return; // the session handler below takes over
  if (status === 403 && xhr.getResponseHeader("Tandem-CSRF-Failed")) {
    // A login since this page was shown (in another tab) renewed the CSRF token: nothing this
    // page sends is taken until it is reloaded. What is typed is put back after the reload.
    document.querySelectorAll("textarea[data-draft]").forEach(keepLocally);
    window.tandemShowError(
      "This page is out of date (you logged in again, in another tab or window): reload it. " +
        "What you typed here is kept.",
    );
    return;
  }
  const text = status === 403
    ? "You are not allowed to do that."
    : `The server answered ${status}. Nothing was lost; try again.`;
  window.tandemShowError(text);
});

// Drafts: every [data-draft] textarea is saved by htmx as the trainer types (to the server) and,
// at every keystroke, to localStorage under the logged-in user (<body data-user-id>) and the URL
// it saves to. The local copy is dropped once the server has the same text; a copy still there
// when the page loads (the session expired, the network failed, the tab closed) is put back into
// its box and saved again. Until the server has answered, leaving the page asks first. A browser
// may be shared: a copy is only ever put back for the user who typed it, another user's copies
// are dropped when a page of someone logged in loads, and logging out drops one's own.
const DRAFT_PREFIX = "tandem-draft:";
const draftUserPrefix = () => {
  const user = document.body && document.body.dataset.userId;
  return user ? `${DRAFT_PREFIX}${user}:` : null;
};
const draftKey = (box) => {
  const prefix = draftUserPrefix();
  if (!prefix) return null; // nobody logged in: nothing is kept or put back
  return prefix + (box.getAttribute("hx-post") || `${location.pathname}#${box.id || box.name}`);
};
let unsavedDraft = false;
let leavingAtLogout = false;

// Local copies that are not this user's (another user's, or from before copies named their user).
function dropOtherUsersDrafts() {
  const own = draftUserPrefix();
  if (!own) return; // the login page: the user about to log in may be the one who typed them
  try {
    Object.keys(localStorage)
      .filter((key) => key.startsWith(DRAFT_PREFIX) && !key.startsWith(own))
      .forEach((key) => localStorage.removeItem(key));
  } catch (error) {
    // Storage disabled: nothing was kept.
  }
}

// This user's local copies: text the server does not have, on this page or another.
function ownDraftKeys() {
  const own = draftUserPrefix();
  if (!own) return [];
  try {
    return Object.keys(localStorage).filter((key) => key.startsWith(own));
  } catch (error) {
    return []; // Storage disabled: nothing was kept.
  }
}

function dropOwnDrafts() {
  ownDraftKeys().forEach((key) => localStorage.removeItem(key));
}

// Logging out: text the server does not have is lost with the local copies (this page's, and
// those kept from another page), so it asks first.
document.addEventListener("submit", (event) => {
  if (!event.target.matches || !event.target.matches("form.logout")) return;
  const unsaved = unsavedDraft || ownDraftKeys().length > 0;
  if (unsaved && !window.confirm("Your unsaved text will be lost. Log out anyway?")) {
    event.preventDefault();
    return;
  }
  leavingAtLogout = true;
  dropOwnDrafts();
});

// The composer's hidden input naming the side its text is typed for (an edit's box has none).
function composerRole(box) {
  return box.form ? box.form.querySelector("#composer-role") : null;
}

// The composer's copy kept in the browser, put back: it keeps the side it was typed for, as the
// server's copy does, so text typed before another tab sent that side's turn asks before it goes
// as the other side's.
function restoreWrittenRole(box, written) {
  const role = composerRole(box);
  if (!role || (written !== "user" && written !== "assistant")) return;
  const form = box.form;
  role.value = written;
  const notice = form.querySelector("#composer-written-role");
  if (written === form.dataset.nextRole) {
    delete form.dataset.writtenRole;
  } else {
    form.dataset.writtenRole = written;
  }
  if (notice) notice.hidden = !form.dataset.writtenRole;
}

function keepLocally(box) {
  const key = draftKey(box);
  if (!key) return;
  const role = composerRole(box);
  const kept = { text: box.value, at: Date.now() };
  if (role) kept.role = role.value;
  try {
    localStorage.setItem(key, JSON.stringify(kept));
  } catch (error) {
    // Storage full or disabled: the server copy still works.
  }
}

function dropLocal(box, text) {
  const key = draftKey(box);
  if (!key) return;
  try {
    const stored = JSON.parse(localStorage.getItem(key) || "null");
    if (stored && (text === undefined || stored.text === text)) localStorage.removeItem(key);
  } catch (error) {
    // Nothing to drop.
  }
}

function restoreDrafts(root) {
  const scope = root && root.querySelectorAll ? root : document;
  scope.querySelectorAll("textarea[data-draft]").forEach((box) => {
    if (box.dataset.draftChecked) return;
    box.dataset.draftChecked = "true";
    if ("draftUnsaved" in box.dataset) {
      // The server sent back text it refused (a turn too long, a stale page): the local copy
      // is all there is, so it stays, and leaving the page asks first, until a save succeeds.
      keepLocally(box);
      box.dataset.draftDirty = "true";
      unsavedDraft = true;
      return;
    }
    box.dataset.draftSaved = box.value; // what the server has (it rendered the page)
    const key = draftKey(box);
    if (!key) return;
    let stored = null;
    try {
      stored = JSON.parse(localStorage.getItem(key) || "null");
    } catch (error) {
      stored = null;
    }
    if (!stored || typeof stored.text !== "string") return;
    if (stored.text === box.value) {
      dropLocal(box);
      return;
    }
    box.value = stored.text;
    restoreWrittenRole(box, stored.role);
    const details = box.closest("details");
    if (details) details.open = true;
    const status = box.form && box.form.querySelector("#draft-status, .draft-status");
    if (status) status.textContent = "Your unsaved text was restored; saving…";
    box.dataset.draftDirty = "true";
    unsavedDraft = true;
    if (window.htmx) window.htmx.trigger(box, "tandem:retry");
  });
}

document.addEventListener("input", (event) => {
  if (!event.target.matches || !event.target.matches("textarea[data-draft]")) return;
  if (event.target.value === event.target.dataset.draftSaved) {
    // Back to what the server has (typed and undone, pasted over with the same text): htmx
    // sends nothing for an unchanged value, so nothing is pending either.
    dropLocal(event.target);
    delete event.target.dataset.draftDirty;
    unsavedDraft = Boolean(document.querySelector("textarea[data-draft][data-draft-dirty]"));
    const status = event.target.form && event.target.form.querySelector("#draft-status, .draft-status");
    if (status && status.textContent === "Unsaved changes…") status.textContent = "No changes to save.";
    return;
  }
  unsavedDraft = true;
  event.target.dataset.draftDirty = "true";
  delete event.target.dataset.draftRefused;
  keepLocally(event.target);
  const status = event.target.form && event.target.form.querySelector("#draft-status, .draft-status");
  if (status) status.textContent = "Unsaved changes…";
});
// A draft box whose form is sending the turn, or has sent it and been replaced.
function sentWithItsTurn(box) {
  return !box.isConnected || Boolean(box.form && box.form.classList.contains("htmx-request"));
}
document.addEventListener("htmx:beforeRequest", (event) => {
  const element = event.detail.elt;
  if (!element.matches || !element.matches("textarea[data-draft]")) return;
  // The text went with the turn, not as the next turn's draft (the server refuses such a late
  // save too).
  if (sentWithItsTurn(element)) {
    event.preventDefault();
    return;
  }
  element.dataset.draftSending = element.value;
});
document.addEventListener("htmx:afterRequest", (event) => {
  const element = event.detail.elt;
  if (!event.detail.successful || !element.matches) return;
  // A saved draft, or a sent turn (a form holding a draft box); other forms (feedback) do not
  // save what is typed in the editor.
  if (element.matches("textarea[data-draft]")) {
    if (event.detail.xhr.status === 422 && !sentWithItsTurn(element)) {
      // Refused (the page missed a turn sent in another tab, the text is over the limit): the
      // server does not have it, so the local copy stays, for the reload the answer asks for,
      // and leaving asks first.
      keepLocally(element);
      element.dataset.draftDirty = "true";
      // Not sent again by the connection retry (the same text would be refused again): a
      // change typed into it is.
      element.dataset.draftRefused = "true";
      unsavedDraft = true;
      return;
    }
    const sent = element.dataset.draftSending;
    if (sent !== undefined) element.dataset.draftSaved = sent;
    if (sent === element.value) {
      dropLocal(element, sent);
      delete element.dataset.draftDirty;
      unsavedDraft = Boolean(document.querySelector("textarea[data-draft][data-draft-dirty]"));
    } else if (sent !== undefined) {
      // The answer is for text typed over since (its own save is queued): "Draft saved" it
      // just showed is not true of what is in the box.
      const status = element.form && element.form.querySelector("#draft-status, .draft-status");
      if (status) status.textContent = "Unsaved changes…";
    }
  }
});
// A sent turn: its text is stored, so the local copies go before the new page part comes in
// (which would otherwise restore them into the empty box).
document.addEventListener("htmx:beforeSwap", (event) => {
  // The element that made the request (htmx sets detail.elt to the swap target here).
  const element = event.detail.requestConfig ? event.detail.requestConfig.elt : event.detail.elt;
  const status = event.detail.xhr.status;
  if (status < 200 || status >= 300 || !element.matches || !element.matches("form")) return;
  const boxes = element.querySelectorAll("textarea[data-draft]");
  if (!boxes.length) return;
  boxes.forEach((box) => {
    dropLocal(box);
    delete box.dataset.draftDirty;
  });
  unsavedDraft = false;
});
// Finishing with text still in the composer asks first: that text is not a turn.
document.addEventListener("htmx:confirm", (event) => {
  const question = event.detail.elt.dataset && event.detail.elt.dataset.confirmUnsent;
  const box = document.getElementById("composer-text");
  if (!question || !box || !box.value.trim()) return;
  event.preventDefault();
  if (window.confirm(question)) event.detail.issueRequest(true);
});
// A turn refused because another tab sent one meanwhile keeps the side it was written for
// (data-written-role); it goes as the next side's turn only once the trainer says so.
document.addEventListener("htmx:confirm", (event) => {
  const form = event.detail.elt;
  const written = form.dataset && form.dataset.writtenRole;
  const role = written && form.querySelector("#composer-role");
  if (!role || role.value !== written) return;
  event.preventDefault();
  const next = form.dataset.nextRole;
  if (!window.confirm(`This text was written as the ${written}'s turn. Send it as the ${next}'s turn?`)) return;
  role.value = next;
  event.detail.issueRequest(true);
});
window.addEventListener("beforeunload", (event) => {
  if (unsavedDraft && !window.tandemLeavingForLogin && !leavingAtLogout) {
    event.preventDefault();
    event.returnValue = "";
  }
});

// An expired session: htmx gets a 401 (config/middleware.py) instead of the login page. The
// text is already in localStorage; go to the login page, which comes back here afterwards.
document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  if (xhr.status !== 401) return;
  document.querySelectorAll("textarea[data-draft]").forEach(keepLocally);
  const login = xhr.getResponseHeader("X-Login-Url")
    || `/accounts/login/?next=${encodeURIComponent(location.pathname + location.search)}`;
  window.tandemLeavingForLogin = true;
  const banner = document.getElementById("connection-banner");
  if (banner) {
    banner.textContent = "Your session has expired: taking you to log in. What you typed is kept.";
    banner.hidden = false;
  }
  window.location.assign(login);
});

// The network failed: a banner says so, and unsaved drafts are sent again every few seconds
// (and at once when the browser is back online) until the server has them.
let retryTimer = null;
const RETRIED_DRAFTS = "textarea[data-draft][data-draft-dirty]:not([data-draft-refused])";
function retryDrafts() {
  document.querySelectorAll(RETRIED_DRAFTS).forEach((box) => {
    if (window.htmx) window.htmx.trigger(box, "tandem:retry");
  });
}
function showOffline() {
  const banner = document.getElementById("connection-banner");
  if (banner) {
    banner.textContent = "Connection lost: what you type is kept on this device and saved as soon as the server answers again.";
    banner.hidden = false;
  }
  if (!retryTimer) retryTimer = window.setInterval(retryDrafts, 3000);
}
document.addEventListener("htmx:sendError", showOffline);
window.addEventListener("offline", showOffline);
window.addEventListener("online", retryDrafts);
document.addEventListener("htmx:afterRequest", (event) => {
  // Any answer from the server (even an error) means the connection is back.
  if (!event.detail.xhr || event.detail.xhr.status === 0) return;
  const banner = document.getElementById("connection-banner");
  if (banner && !window.tandemLeavingForLogin) banner.hidden = true;
  if (retryTimer && !document.querySelector(RETRIED_DRAFTS)) {
    window.clearInterval(retryTimer);
    retryTimer = null;
  }
});

if (window.htmx) {
  document.addEventListener("htmx:load", (event) => restoreDrafts(event.detail.elt));
}
document.addEventListener("DOMContentLoaded", () => {
  dropOtherUsersDrafts();
  restoreDrafts(document);
});

// "Use" on a suggestion puts its text into the composer, remembers which sample it came from
// (so the saved turn records its origin and edit distance) and saves the draft. Suggestions
// arrive while the trainer types: text of theirs it replaces comes back, with the origin it
// had (the sample it came from, or none: the trainer's own), with the "Undo" shown beside the
// box, or with Ctrl+Z (Cmd+Z) while the box holds the suggestion as "Use" put it there. The
// box's own undo history is not used for this: a script edits that only through the
// deprecated execCommand, and Chromium crashed closing a tab after such an edit.
let replacedByUse = null;

function composerSet(textarea, text) {
  textarea.value = text;
  textarea.dispatchEvent(new Event("input", { bubbles: true }));
  textarea.focus();
}

function useUndoShown(shown) {
  const undo = document.getElementById("use-undo");
  if (undo) undo.hidden = !shown;
  if (!shown) replacedByUse = null;
}

function useUndone() {
  const previous = replacedByUse;
  useUndoShown(false);
  if (!previous || !previous.textarea.isConnected) return;
  const sample = document.getElementById("composer-sample");
  if (sample) sample.value = previous.sample;
  composerSet(previous.textarea, previous.text);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest(".use-suggestion");
  if (!button) return;
  const textarea = document.getElementById("composer-text");
  const sample = document.getElementById("composer-sample");
  if (!textarea || !sample) return;
  const text = button.closest(".suggestion").querySelector(".suggestion-text").textContent;
  const previous = { textarea, text: textarea.value, sample: sample.value, used: text };
  sample.value = button.dataset.sampleId;
  composerSet(textarea, text);
  const replaced = previous.text.trim() !== "" && previous.text !== text;
  useUndoShown(replaced);
  if (replaced) replacedByUse = previous;
});
document.addEventListener("click", (event) => {
  if (event.target.closest && event.target.closest("#use-undo-button")) useUndone();
});
document.addEventListener("keydown", (event) => {
  const previous = replacedByUse;
  if (!previous || event.target !== previous.textarea || previous.textarea.value !== previous.used) return;
  if (!(event.ctrlKey || event.metaKey) || event.shiftKey || event.altKey || event.key.toLowerCase() !== "z") return;
  event.preventDefault();
  useUndone();
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

// Phones: the "Menu" button opens and closes the main navigation.
document.addEventListener("click", (event) => {
  const toggle = event.target.closest && event.target.closest(".nav-toggle");
  if (!toggle) return;
  const nav = document.getElementById(toggle.getAttribute("aria-controls"));
  const open = nav.classList.toggle("open");
  toggle.setAttribute("aria-expanded", String(open));
});

// Keyboard focus across swaps. htmx puts focus back on an element with the same id; a pressed
// button without one (thumbs, marking an attack, "mark as read") would leave focus on the page
// itself, and the next Tab would start again from the top. Focus goes instead to the same
// control in what replaced it (same accessible name, else same name and value, else same text),
// else, that control disabled now, to the next control of its group, else to its first
// control, else to the swapped-in region itself.
const FOCUSABLE =
  'button:not([disabled]), a[href], input:not([type="hidden"]):not([disabled]), select:not([disabled]), ' +
  'textarea:not([disabled]), summary, [tabindex]:not([tabindex="-1"])';
let focusedBeforeSwap = null;

function sameControl(before, candidates, region) {
  const label = before.getAttribute("aria-label");
  const name = before.getAttribute("name");
  const text = before.textContent.trim();
  const tests = [
    (elt) => label && elt.getAttribute("aria-label") === label,
    (elt) => name && elt.getAttribute("name") === name && elt.value === before.value,
    (elt) => text && elt.tagName === before.tagName && elt.textContent.trim() === text,
  ];
  for (const test of tests) {
    const match = candidates.find(test);
    if (match) return match;
  }
  // The same control, disabled now (a branch switcher's "‹" at the first alternative): the
  // next one of its group (data-focus-group), not the region's first control ("Mark
  // finished", which the next Enter would press).
  const disabled = label
    ? Array.from(region.querySelectorAll("[aria-label]")).find((elt) => elt.getAttribute("aria-label") === label)
    : null;
  const group = disabled && disabled.closest("[data-focus-group]");
  const neighbour = group && candidates.find((elt) => group.contains(elt));
  return neighbour || candidates[0] || null;
}

document.addEventListener("htmx:beforeSwap", () => {
  focusedBeforeSwap = document.activeElement;
});
// The control that had focus, per swapped-in region, until that region settles: htmx makes
// the new content's forms and buttons its own only then, and a key pressed on a control
// focused before that submitted its form the plain way (a whole page load, losing the place).
// Kept per region: another swap between the two must not change what this one restores.
const focusAfterSettle = new WeakMap();
document.addEventListener("htmx:afterSwap", (event) => {
  const before = focusedBeforeSwap;
  if (!before || before === document.body || document.contains(before)) return;
  focusAfterSettle.set(event.target, before);
});
document.addEventListener("htmx:afterSettle", (event) => {
  const region = event.target;
  const before = focusAfterSettle.get(region);
  if (!before) return;
  focusAfterSettle.delete(region);
  if (document.activeElement && document.activeElement !== document.body) return;
  if (!(region instanceof Element) || !document.contains(region)) return;
  // Only what is shown can take focus (a hidden panel's buttons cannot).
  const shown = Array.from(region.querySelectorAll(FOCUSABLE)).filter(
    (elt) => elt.getClientRects().length > 0,
  );
  const goal = sameControl(before, shown, region) || region;
  if (goal === region && !region.hasAttribute("tabindex")) region.setAttribute("tabindex", "-1");
  goal.focus({ preventScroll: true });
});
