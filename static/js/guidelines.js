// The guidelines panel on the writing and ranking pages: "?" or "g" (outside text fields) and the
// toggle buttons show or hide it; Escape hides it. The panel is loaded by htmx (it asks once to
// read a new version), so listeners are delegated from the document.
(() => {
  // Every project has its own guidelines: the slot names its project (data-project), and a
  // page whose work moves to another project (the ranking page's next task) names the new one
  // on an element marked data-guideline-project; the panel follows it.
  function load(slot, project) {
    const url = new URL(slot.dataset.panelUrl, window.location.href);
    if (project) url.searchParams.set("project", project);
    htmx.ajax("GET", url.pathname + url.search, { target: slot, swap: "outerHTML" });
  }

  // Without JS the slot keeps its link to the guidelines page.
  const slot = document.querySelector("#guidelines-slot[data-panel-url]");
  if (slot && window.htmx) load(slot, slot.dataset.project);

  document.addEventListener("htmx:afterSettle", () => {
    const current = document.querySelector("#guidelines-slot[data-panel-url]");
    const work = document.querySelector("[data-guideline-project]");
    if (!current || !work || !window.htmx) return;
    const project = work.dataset.guidelineProject;
    if (project && project !== current.dataset.project) {
      current.dataset.project = project; // one reload, even if another swap settles meanwhile
      load(current, project);
    }
  });

  function toggles() {
    return document.querySelectorAll(".guidelines-toggle");
  }

  // Where the focus goes back once the panel closes (Escape, "g", its x, or "I have read
  // version N" swapping the slot): the page's control that last had it, outside the slot (the
  // ranking card's title, where Enter submits), else the element a page marks
  // data-guidelines-return, else the toggle. The toggle alone would keep the page's own keys
  // from working: Enter on it opens the panel again.
  let lastOutside = null;
  document.addEventListener("focusin", (event) => {
    const target = event.target;
    if (target instanceof Element && !target.closest("#guidelines-slot")) lastOutside = target;
  });

  function shown(element) {
    return element && element.isConnected && element.getClientRects().length > 0;
  }

  function focusBack() {
    const marked = document.querySelector("[data-guidelines-return]");
    const goal = [lastOutside, marked, toggles()[0]].find(shown);
    if (goal) goal.focus({ preventScroll: true });
  }

  function setOpen(panel, open) {
    const hadFocus = panel.contains(document.activeElement);
    panel.hidden = !open;
    toggles().forEach((button) => button.setAttribute("aria-expanded", String(open)));
    if (open) panel.focus();
    else if (hadFocus) focusBack(); // not lost to the page itself
  }

  // "I have read version N" swaps the whole slot, the pressed button with it.
  let focusInSwappedSlot = false;
  document.addEventListener("htmx:beforeSwap", (event) => {
    const target = event.detail.target;
    focusInSwappedSlot = Boolean(
      target && target.id === "guidelines-slot" && target.contains(document.activeElement),
    );
  });
  document.addEventListener("htmx:afterSwap", () => {
    if (!focusInSwappedSlot) return;
    focusInSwappedSlot = false;
    focusBack();
  });

  document.addEventListener("keydown", (event) => {
    const panel = document.getElementById("guidelines-panel");
    // A page's own shortcut (the ranking page's "?" lists its keys) goes first.
    if (!panel || event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape" && !panel.hidden) {
      setOpen(panel, false);
      return;
    }
    if (event.key !== "?" && event.key !== "g") return;
    const target = event.target;
    if (target.closest && target.closest("input, textarea, select, [contenteditable]")) return;
    event.preventDefault();
    setOpen(panel, panel.hidden);
  });

  document.addEventListener("click", (event) => {
    const panel = document.getElementById("guidelines-panel");
    if (!panel) return;
    if (event.target.closest(".guidelines-toggle")) setOpen(panel, panel.hidden);
    else if (event.target.closest(".guidelines-close")) setOpen(panel, false);
  });
})();
