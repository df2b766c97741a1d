// Ranking page. The server reads only the rank numbers (rank_<id>: 1 = best, equal = a tie), so
// the form works without this file; here dragging (SortableJS), the keyboard and the
// "tied with the reply above" boxes reorder the list and fill the numbers in from it.
(() => {
  const itemsOf = (list) => Array.from(list.querySelectorAll(":scope > li.candidate"));
  const tieOf = (item) => item.querySelector(".tie-input");
  const rankInputOf = (item) => item.querySelector(".rank-input");

  // Dense ranks from the list order: each item not tied with the one above starts a new rank.
  function renumber(list) {
    const items = itemsOf(list);
    let rank = 0;
    items.forEach((item, index) => {
      const tie = tieOf(item);
      if (index === 0) tie.checked = false;
      tie.disabled = index === 0;
      if (!tie.checked) rank += 1;
      rankInputOf(item).value = String(rank);
      item.dataset.rank = String(rank);
    });
    items.forEach((item, index) => {
      const below = items[index + 1];
      const tied = tieOf(item).checked || Boolean(below && tieOf(below).checked);
      item.classList.toggle("tied", tied);
      item.querySelector(".rank-badge").textContent = tied
        ? `${item.dataset.rank} (tie)`
        : item.dataset.rank;
    });
  }

  // Typed numbers win: order the list by them (blank or invalid last, otherwise as it was),
  // equal numbers become ties. Also how a re-rendered form (422) gets its ties back.
  function syncFromNumbers(list) {
    const rankOf = (item) => {
      const value = Number(rankInputOf(item).value);
      return Number.isInteger(value) && value > 0 ? value : Infinity;
    };
    const entries = itemsOf(list)
      .map((item, index) => ({ item, index, rank: rankOf(item) }))
      .sort((a, b) => (a.rank === b.rank ? a.index - b.index : a.rank - b.rank));
    entries.forEach((entry, index) => {
      const above = entries[index - 1];
      tieOf(entry.item).checked =
        Boolean(above) && entry.rank !== Infinity && entry.rank === above.rank;
      list.appendChild(entry.item);
    });
    renumber(list);
  }

  function announce(list, item) {
    const status = document.getElementById("ranking-status");
    if (!status) return;
    const position = itemsOf(list).indexOf(item) + 1;
    status.textContent = `Reply ${item.dataset.letter}: position ${position}, rank ${item.querySelector(".rank-badge").textContent}.`;
  }

  function moveTo(list, item, position) {
    const others = itemsOf(list).filter((other) => other !== item);
    const target = Math.max(0, Math.min(others.length, position));
    if (itemsOf(list).indexOf(item) === target) return;
    list.insertBefore(item, others[target] || null);
    // A reply put somewhere new is not tied with its new neighbour until the trainer says so.
    tieOf(item).checked = false;
    renumber(list);
    item.focus();
    announce(list, item);
  }

  function onKeydown(list, event) {
    const item = event.target;
    if (!item.matches || !item.matches("li.candidate")) return;
    if (event.ctrlKey || event.altKey || event.metaKey) return;
    const index = itemsOf(list).indexOf(item);
    if (event.key === "ArrowUp") moveTo(list, item, index - 1);
    else if (event.key === "ArrowDown") moveTo(list, item, index + 1);
    else if (/^[1-9]$/.test(event.key)) moveTo(list, item, Number(event.key) - 1);
    else if (event.key === "t" || event.key === "T") {
      const tie = tieOf(item);
      if (!tie.disabled) {
        tie.checked = !tie.checked;
        renumber(list);
        announce(list, item);
      }
    } else return;
    event.preventDefault();
  }

  function enhance(list) {
    if (list.dataset.enhanced) return;
    list.dataset.enhanced = "true";
    list.querySelectorAll(".tie-label").forEach((label) => {
      label.hidden = false;
    });
    syncFromNumbers(list);

    if (window.Sortable) {
      window.Sortable.create(list, {
        handle: ".drag-handle",
        draggable: "li.candidate",
        animation: 150,
        // Pointer events instead of native drag and drop: the same behaviour with a mouse, a
        // touch screen or an automated browser, and the dragged card stays readable.
        forceFallback: true,
        fallbackOnBody: true,
        ghostClass: "candidate-ghost",
        chosenClass: "candidate-chosen",
        onEnd: (event) => {
          if (event.oldIndex !== event.newIndex) tieOf(event.item).checked = false;
          renumber(list);
          announce(list, event.item);
        },
      });
    }
    list.addEventListener("keydown", (event) => onKeydown(list, event));
    list.addEventListener("change", (event) => {
      if (event.target.matches(".tie-input")) renumber(list);
      else if (event.target.matches(".rank-input")) syncFromNumbers(list);
    });

    const form = list.closest("form");
    form.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
      const submit = form.querySelector("button.primary[type=submit]");
      if (!submit || submit.disabled) return;
      event.preventDefault();
      form.requestSubmit(submit);
    });
  }

  function init(root) {
    const list = root.id === "ranking-list" ? root : root.querySelector("#ranking-list");
    if (list) enhance(list);
  }

  if (window.htmx) window.htmx.onLoad(init);
  else document.addEventListener("DOMContentLoaded", () => init(document));
})();
