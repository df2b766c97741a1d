// Charts drawn with Chart.js (npm chart.js, served from node_modules): every
// <canvas data-chart="bar" data-source="<id of a json_script with [[label, value], ...]>">.
// No inline script: the data comes in <script type="application/json"> (not executed).
(() => {
  function draw(canvas) {
    if (canvas.dataset.drawn || !window.Chart) return;
    const source = document.getElementById(canvas.dataset.source);
    if (!source) return;
    canvas.dataset.drawn = "true";
    const rows = JSON.parse(source.textContent);
    const horizontal = canvas.dataset.horizontal === "true";
    const accent = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() || "#2f5bea";
    // eslint-disable-next-line no-new
    new window.Chart(canvas, {
      type: canvas.dataset.chart || "bar",
      data: {
        labels: rows.map((row) => row[0]),
        datasets: [{ label: canvas.dataset.label || "", data: rows.map((row) => row[1]), backgroundColor: accent }],
      },
      options: {
        indexAxis: horizontal ? "y" : "x",
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: { [horizontal ? "x" : "y"]: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
  }
  function init(root) {
    (root.querySelectorAll ? root : document).querySelectorAll("canvas[data-chart]").forEach(draw);
  }
  if (window.htmx) window.htmx.onLoad(init);
  else document.addEventListener("DOMContentLoaded", () => init(document));
})();
