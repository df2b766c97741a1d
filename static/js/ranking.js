// Ranking page. The server reads only the rank numbers (rank_<n>: 1 = best, equal = a tie; a
// reply's <n>, its data-candidate-id, is the number it is shown under, never a row id) and
// the verdict, so the form works without this file. Here the replies start unplaced; the trainer
// places them best first (a reply's number key, two digits from reply 10 on, or its "Place
// next" button), ties the last one with the one before ("t"), undoes ("u"), and submits with
// Enter once every reply is placed or a verdict with a reason is chosen (Ctrl+Enter from the
// "Why?" box; Enter in a flag note does nothing, Enter in the skip reason skips). Nothing is
// ranked until the trainer ranks it.
// What the trainer has done on a card (placements, flags, notes, answer, reason, the time to the
// first placement) is kept in sessionStorage under its assignment and put back when the page is
// shown again (a reload, Back); until it is sent, leaving the page asks first.
(() => {
  // card -> { groups: [[id, ...], ...], shownAt, openedAt, list, form, leaving }
  const state = new WeakMap();
  const STORE_PREFIX = "tandem-rank:";
  const storeKey = (card) => STORE_PREFIX + card.dataset.assignmentId;
  // The form's fields kept beside the placements (the rank boxes are the placements).
  const KEPT = 'input[type="checkbox"], input[type="radio"], input[type="text"], textarea, #ranking-first-placement';
  const keptKey = (field) =>
    field.type === "checkbox" || field.type === "radio" ? `${field.name}=${field.value}` : field.name;
  const keptValue = (field) =>
    field.type === "checkbox" || field.type === "radio" ? field.checked : field.value;

  const itemsOf = (list) => Array.from(list.querySelectorAll(":scope > li.candidate"));
  const idOf = (item) => Number(item.dataset.candidateId);
  const itemById = (list, id) => list.querySelector(`li.candidate[data-candidate-id="${id}"]`);
  const numberOf = (list, id) => itemById(list, id).dataset.number;

  function verdictOf(form) {
    const checked = form.querySelector("input[name=verdict]:checked");
    return checked ? checked.value : "";
  }

  // Groups from the rank numbers already in the form (a re-rendered 422 keeps its answer).
  function groupsFromNumbers(list) {
    const byRank = new Map();
    itemsOf(list).forEach((item) => {
      const value = Number(item.querySelector(".rank-input").value);
      if (!Number.isInteger(value) || value < 1) return;
      if (!byRank.has(value)) byRank.set(value, []);
      byRank.get(value).push(idOf(item));
    });
    return Array.from(byRank.keys()).sort((a, b) => a - b).map((rank) => byRank.get(rank));
  }

  function render(card) {
    const { groups, list, form } = state.get(card);
    const rankOf = new Map();
    groups.forEach((group, index) => group.forEach((id) => rankOf.set(id, index + 1)));
    const items = itemsOf(list);
    items.forEach((item) => {
      const id = idOf(item);
      const rank = rankOf.get(id);
      const tied = rank !== undefined && groups[rank - 1].length > 1;
      item.querySelector(".rank-input").value = rank === undefined ? "" : String(rank);
      item.classList.toggle("placed", rank !== undefined);
      item.classList.toggle("tied", tied);
      item.querySelector(".rank-badge").textContent =
        rank === undefined ? "Not placed" : `Rank ${rank}${tied ? " (tie)" : ""}`;
      const place = item.querySelector(".place-button");
      place.hidden = false;
      place.disabled = rank !== undefined;
      place.textContent = rank === undefined ? "Place next" : "Placed";
    });
    const order = card.querySelector("#ranking-order");
    const verdict = verdictOf(form);
    // With another answer chosen the placements are kept on the page but not sent as a ranking.
    const answer = verdict && form.querySelector("input[name=verdict]:checked").parentElement;
    order.textContent = answer
      ? `not used (your answer: ${answer.textContent.trim()})`
      : groups.length
        ? groups.map((group) => group.map((id) => numberOf(list, id)).join(" = ")).join("  >  ")
        : "nothing placed yet";
    const placed = groups.reduce((count, group) => count + group.length, 0);
    const reason = form.querySelector("#ranking-rationale").value.trim();
    const complete = verdict ? reason.length > 0 : placed === items.length && groups.length > 1;
    form.classList.toggle("has-verdict", Boolean(verdict));
    const submit = form.querySelector("#ranking-submit");
    if (submit) {
      submit.disabled = !complete;
      submit.title = complete
        ? ""
        : verdict
          ? "Say why first"
          : placed === items.length
            ? "Every reply is tied: rank them or choose “All equally good”"
            : `Place every reply first (${placed} of ${items.length} placed)`;
    }
    card.querySelector(".ranking-tie").disabled = !(
      groups.length > 1 || (groups.length === 1 && groups[0].length > 1)
    );
    card.querySelector(".ranking-undo").disabled = placed === 0;
    keep(card);
    return { placed, total: items.length, complete };
  }

  // Only a card with something on it is kept (an untouched or unsendable one is not).
  function keep(card) {
    const { groups, form, openedAt } = state.get(card);
    const fields = {};
    form.querySelectorAll(KEPT).forEach((field) => {
      fields[keptKey(field)] = keptValue(field);
    });
    try {
      if (!answered(card)) sessionStorage.removeItem(storeKey(card));
      else sessionStorage.setItem(storeKey(card), JSON.stringify({ groups, fields, openedAt }));
    } catch (error) {
      // Storage full or disabled: the page still works, a reload loses the card's state.
    }
  }

  // The card's state kept by an earlier showing of it (before a reload, or Back): newer than
  // what the server rendered (it stores nothing until the answer is sent).
  function restore(card) {
    const entry = state.get(card);
    let stored = null;
    try {
      stored = JSON.parse(sessionStorage.getItem(storeKey(card)) || "null");
    } catch (error) {
      stored = null;
    }
    if (!stored || !Array.isArray(stored.groups) || !stored.fields) return;
    const shown = new Set(itemsOf(entry.list).map(idOf));
    entry.groups = stored.groups
      .map((group) => group.filter((id) => shown.has(id)))
      .filter((group) => group.length);
    entry.form.querySelectorAll(KEPT).forEach((field) => {
      const value = stored.fields[keptKey(field)];
      if (value === undefined) return;
      if (typeof value === "boolean") field.checked = value;
      else field.value = value;
      const details = field.closest("details");
      if (details && value) details.open = true; // a ticked flag, a note, a skip reason
    });
    if (Number.isFinite(stored.openedAt)) {
      entry.openedAt = stored.openedAt;
      entry.shownAt = performance.now() - (Date.now() - stored.openedAt);
    }
  }

  // Anything placed, ticked or typed that the server does not have yet.
  function answered(card) {
    const { groups, form } = state.get(card);
    if (!form.querySelector("#ranking-submit")) return false; // a conflict: nothing can be sent
    return (
      groups.length > 0 ||
      Array.from(form.querySelectorAll(KEPT)).some((field) =>
        field.type === "checkbox" || field.type === "radio"
          ? field.checked && field.value
          : field.type !== "hidden" && field.value.trim(),
      )
    );
  }

  function announce(card, text) {
    const status = card.querySelector("#ranking-status");
    if (status) status.textContent = text;
  }

  function place(card, id) {
    const entry = state.get(card);
    if (entry.groups.some((group) => group.includes(id))) {
      announce(card, `Reply ${numberOf(entry.list, id)} is already placed.`);
      return;
    }
    // Recorded once; a card shown again with placements but without it (Back restores the
    // placements, not a hidden field) records it at the next placement.
    const field = card.querySelector("#ranking-first-placement");
    if (field && !field.value) field.value = String(Math.round(performance.now() - entry.shownAt));
    entry.groups.push([id]);
    const { placed, total } = render(card);
    announce(
      card,
      `Reply ${numberOf(entry.list, id)} placed at rank ${entry.groups.length}; ${placed} of ${total} placed.`,
    );
  }

  // The last placed reply joins the group before it (or leaves it again when already tied).
  function tie(card) {
    const entry = state.get(card);
    const { groups, list } = entry;
    if (!groups.length) return;
    const last = groups[groups.length - 1];
    if (last.length > 1) {
      groups.push([last.pop()]);
    } else if (groups.length > 1) {
      groups.pop();
      groups[groups.length - 1].push(last[0]);
    } else return;
    render(card);
    const id = groups[groups.length - 1][groups[groups.length - 1].length - 1];
    const group = groups[groups.length - 1];
    announce(
      card,
      group.length > 1
        ? `Reply ${numberOf(list, id)} tied at rank ${groups.length}.`
        : `Reply ${numberOf(list, id)} no longer tied.`,
    );
  }

  function undo(card) {
    const entry = state.get(card);
    const { groups, list } = entry;
    if (!groups.length) return;
    const last = groups[groups.length - 1];
    const id = last.pop();
    if (!last.length) groups.pop();
    render(card);
    announce(card, `Reply ${numberOf(list, id)} taken back.`);
  }

  function flag(card) {
    const entry = state.get(card);
    const { groups, list } = entry;
    const last = groups.length ? groups[groups.length - 1] : null;
    const id = last ? last[last.length - 1] : idOf(itemsOf(list)[0]);
    const details = itemById(list, id).querySelector("details.flags");
    details.open = true;
    const first = details.querySelector("input[type=checkbox]");
    first.focus();
    // Opening a <details> lays its content out on the next frame in some browsers.
    if (document.activeElement !== first) window.requestAnimationFrame(() => first.focus());
  }

  // With ten replies or more, a digit that starts a reply's number (the "1" of 10 to 17) waits
  // for a second one: two digits typed together place reply 10, 11, ...; the first alone is
  // placed when no second digit follows within NUMBER_PAUSE_MS, or at once by a key that makes
  // no reply's number with it (on 12 replies, "1" then "2" is reply 12; "1" then "5" is 1, 5).
  const NUMBER_PAUSE_MS = 1000;

  function placeNumber(card, number) {
    const item = state.get(card).list.querySelector(`li.candidate[data-number="${number}"]`);
    if (item) place(card, idOf(item));
  }

  function placePending(card) {
    const entry = state.get(card);
    if (!entry.pending) return;
    const { digit, timer } = entry.pending;
    window.clearTimeout(timer);
    entry.pending = null;
    if (card.isConnected) placeNumber(card, Number(digit));
  }

  function typeDigit(card, digit) {
    const entry = state.get(card);
    const count = itemsOf(entry.list).length;
    if (entry.pending) {
      const joined = Number(entry.pending.digit + digit);
      if (joined <= count) {
        window.clearTimeout(entry.pending.timer);
        entry.pending = null;
        placeNumber(card, joined);
        return;
      }
      placePending(card);
    }
    const number = Number(digit);
    if (number === 0) return; // no reply 0
    if (number * 10 > count) {
      placeNumber(card, number);
      return;
    }
    entry.pending = { digit, timer: window.setTimeout(() => placePending(card), NUMBER_PAUSE_MS) };
    const last = Math.min(count, number * 10 + 9);
    announce(card, `Reply ${number}, or type a second digit for replies ${number * 10} to ${last}.`);
  }

  function submitIfComplete(card) {
    const { form } = state.get(card);
    const submit = form.querySelector("#ranking-submit");
    if (!submit) return;
    if (submit.disabled) {
      announce(card, submit.title);
      return;
    }
    form.requestSubmit(submit);
  }

  function typing(target) {
    return Boolean(
      // Ticking a flag or a verdict is not typing: the ranking keys still work from there.
      target.closest &&
        target.closest(
          'input:not([type="checkbox"]):not([type="radio"]), textarea, select, [contenteditable=true], dialog',
        ),
    );
  }

  function onKeydown(event) {
    const card = document.getElementById("ranking-card");
    if (!card || !state.has(card) || event.defaultPrevented || event.isComposing) return;
    const { form } = state.get(card);
    // A digit waiting for a second one is placed before any other key does its work.
    if (!/^[0-9]$/.test(event.key) || typing(event.target)) placePending(card);
    if (event.key === "Enter" && form.contains(event.target)) {
      if (event.target.name === "skip_reason") {
        // Enter (or Ctrl+Enter) after the reason does what "Skip task" beside it does.
        event.preventDefault();
        event.target.parentElement.querySelector("button[type=submit]").click();
        return;
      }
      if (event.ctrlKey || event.metaKey) {
        event.preventDefault();
        submitIfComplete(card);
        return;
      }
      // Not the browser's own Enter in a text field (a flag note): that would submit the form
      // with its first button, the ranking.
      if (event.target.matches('input[type="text"]')) {
        event.preventDefault();
        return;
      }
    }
    const flags = event.key === "Escape" && event.target.closest && event.target.closest("details.flags");
    if (flags) {
      // Out of a reply's flags (opened with "f"): close them, focus back on their reply (not
      // on the flags' summary, where Enter would open them again rather than submit).
      flags.open = false;
      const item = flags.closest("li.candidate");
      item.tabIndex = -1; // focusable from here, not a stop of Tab
      item.focus();
      event.preventDefault();
      return;
    }
    const shortcuts = card.querySelector("#ranking-shortcuts");
    if (event.key === "?" && shortcuts.open && shortcuts.contains(event.target)) {
      // The list takes the focus while it is open ("?" shows it, "?" hides it again).
      shortcuts.close();
      event.preventDefault();
      return;
    }
    if (event.ctrlKey || event.altKey || event.metaKey || typing(event.target)) return;
    const onControl = event.target.closest && event.target.closest("button, a, summary");
    if (/^[0-9]$/.test(event.key)) typeDigit(card, event.key);
    else if (event.key === "t" || event.key === "T" || event.key === "=") tie(card);
    else if (event.key === "u" || event.key === "U" || event.key === "Backspace") undo(card);
    else if (event.key === "f" || event.key === "F") flag(card);
    else if (event.key === "?") {
      if (shortcuts.open) shortcuts.close();
      else shortcuts.showModal();
    } else if (event.key === "Enter" && !onControl) submitIfComplete(card);
    else return;
    event.preventDefault();
  }

  // Long replies, and long turns of the conversation above them, fold to a few lines with a
  // "Show all" button, so that several fit on one screen and nothing is out of reach.
  function foldable(text, button, label) {
    // Folded is 6em high (about four lines): fold only what is clearly longer.
    const limit = parseFloat(getComputedStyle(text).fontSize) * 6;
    if (text.scrollHeight <= limit + 16) return;
    text.classList.add("folded");
    button.hidden = false;
    button.addEventListener("click", () => {
      const folded = text.classList.toggle("folded");
      button.setAttribute("aria-expanded", String(!folded));
      button.textContent = `${folded ? "Show all" : "Fold"} of ${label}`;
    });
  }

  function fold(list, card) {
    itemsOf(list).forEach((item) => {
      foldable(
        item.querySelector(".candidate-text"),
        item.querySelector(".unfold"),
        `reply ${item.dataset.number}`,
      );
    });
    card.querySelectorAll(".ranking-prefix .turn-body").forEach((body) => {
      foldable(body.querySelector(".markdown"), body.querySelector(".unfold"), "this turn");
    });
  }

  function enhance(card) {
    const list = card.querySelector("#ranking-list");
    const form = card.querySelector("#ranking-form");
    if (!list || !form || state.has(card)) return;
    state.set(card, {
      groups: groupsFromNumbers(list),
      list,
      form,
      shownAt: performance.now(),
      openedAt: Date.now(),
      leaving: false,
      pending: null, // { digit, timer }: the first digit of a reply number 10 or more
    });
    restore(card);
    form.classList.add("enhanced");
    card.classList.add("enhanced");
    card.querySelectorAll(".shortcut-help, .ranking-order, .ranking-tie, .ranking-undo").forEach((element) => {
      element.hidden = false;
    });
    card.querySelector(".ranking-tie").addEventListener("click", () => tie(card));
    card.querySelector(".ranking-undo").addEventListener("click", () => undo(card));
    list.addEventListener("click", (event) => {
      const button = event.target.closest(".place-button");
      if (!button) return;
      placePending(card);
      place(card, idOf(button.closest("li.candidate")));
    });
    // Numbers typed into the (visually tucked away) rank boxes still count.
    list.addEventListener("change", (event) => {
      if (!event.target.matches(".rank-input")) return;
      state.get(card).groups = groupsFromNumbers(list);
      render(card);
    });
    form.addEventListener("input", () => render(card));
    form.addEventListener("change", () => render(card));
    const layout = card.querySelector("#ranking-layout");
    if (layout) {
      layout.hidden = false;
      layout.addEventListener("click", () => {
        const on = list.classList.toggle("side-by-side");
        layout.setAttribute("aria-pressed", String(on));
      });
    }
    fold(list, card);
    render(card);
  }

  function init(root) {
    const card = root.id === "ranking-card" ? root : root.querySelector("#ranking-card");
    if (!card) return;
    enhance(card);
    // A card swapped in (next task, waiting state) takes the focus, so the trainer's eyes and
    // the keyboard are on it.
    if (root !== document.body && root !== document) {
      const title = card.querySelector("#ranking-title");
      if (title) title.focus({ preventScroll: true });
    }
  }

  document.addEventListener("keydown", onKeydown);
  // A submit htmx did not take (it cancels the ones it sends) leaves the page: no question then.
  document.addEventListener("submit", (event) => {
    const card = document.getElementById("ranking-card");
    if (card && state.has(card) && event.target === state.get(card).form && !event.defaultPrevented) {
      state.get(card).leaving = true;
    }
  });
  window.addEventListener("beforeunload", (event) => {
    const card = document.getElementById("ranking-card");
    if (!card || !state.has(card) || state.get(card).leaving || window.tandemLeavingForLogin) return;
    if (!answered(card)) return;
    event.preventDefault();
    event.returnValue = "";
  });
  // An answer (a ranking or a skip) the server took: its kept state goes with its card.
  document.addEventListener("htmx:beforeSwap", (event) => {
    const element = event.detail.requestConfig ? event.detail.requestConfig.elt : event.detail.elt;
    const status = event.detail.xhr.status;
    if (status < 200 || status >= 300 || !element.closest || !element.closest("#ranking-form")) return;
    const card = element.closest("#ranking-card");
    try {
      sessionStorage.removeItem(storeKey(card));
    } catch (error) {
      // Nothing to drop.
    }
  });
  // The bar at the bottom (your order, Submit) sticks over the page: a text field taking
  // focus under it (the "Why?" box) scrolls up into view above it. Only text fields: a box or
  // button moved away under the pointer between its mousedown and mouseup is not clicked.
  const TEXT_FIELD = 'textarea, input:not([type="checkbox"]):not([type="radio"]):not([type="hidden"])';
  document.addEventListener("focusin", (event) => {
    const card = document.getElementById("ranking-card");
    const bar = card && card.querySelector(".ranking-bar");
    const field = event.target;
    if (!bar || !field.matches || !field.matches(TEXT_FIELD)) return;
    if (!card.contains(field) || bar.contains(field)) return;
    const hidden = field.getBoundingClientRect().bottom - bar.getBoundingClientRect().top;
    if (hidden > 0) window.scrollBy({ top: hidden + 8, behavior: "instant" });
  });
  if (window.htmx) window.htmx.onLoad(init);
  else document.addEventListener("DOMContentLoaded", () => init(document));
})();
