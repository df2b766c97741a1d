// Charts drawn with Chart.js (npm chart.js, served from node_modules): every
// <canvas data-chart="bar" data-source="<id of a json_script with [[label, value], ...]>">.
// No inline script: the data comes in <script type="application/json"> (not executed).
(() => {
  function draw(canvas) {
    if (canvas.dataset.drawn || !window.Chart) return;
    const source = document.getElementById(canvas.dataset.source);
    if (!source) return;
    canvas.dataset.drawn = "true";
    const payload = JSON.parse(source.textContent);
    if (canvas.dataset.chart === "line") {
      drawLines(canvas, payload);
      return;
    }
    const rows = payload;
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
  // A value axis's tick, short: 3.5e-5 for a learning rate (Chart.js wrote 3.500000E-5),
  // 0.25 or 1,200 otherwise. Three significant digits are enough to read an axis.
  function shortNumber(value) {
    const number = Number(value);
    if (number === 0 || !Number.isFinite(number)) return String(number);
    const size = Math.abs(number);
    if (size < 1e-3 || size >= 1e5) return Number(number.toPrecision(3)).toExponential();
    return Number(number.toPrecision(4)).toLocaleString("en-US");
  }

  // Training curves: {"title", "series": {name: [[step, value], ...]}, "colors": [...]}.
  function drawLines(canvas, payload) {
    const names = Object.keys(payload.series);
    // eslint-disable-next-line no-new
    new window.Chart(canvas, {
      type: "line",
      data: {
        datasets: names.map((name, index) => ({
          label: name,
          data: payload.series[name].map(([x, y]) => ({ x, y })),
          borderColor: payload.colors[index % payload.colors.length],
          backgroundColor: payload.colors[index % payload.colors.length],
          borderWidth: 1.6,
          pointRadius: payload.series[name].length === 1 ? 3 : 0,
        })),
      },
      options: {
        animation: false,
        parsing: false,
        plugins: { title: { display: true, text: payload.title }, legend: { position: "bottom" } },
        scales: {
          // Steps are whole numbers: no 5.1 between steps 5 and 6.
          x: { type: "linear", title: { display: true, text: "step" }, ticks: { precision: 0 } },
          y: { ticks: { callback: shortNumber } },
        },
      },
    });
  }

  function init(root) {
    (root.querySelectorAll ? root : document).querySelectorAll("canvas[data-chart]").forEach(draw);
  }
  if (window.htmx) window.htmx.onLoad(init);
  else document.addEventListener("DOMContentLoaded", () => init(document));
})();
