// Draws the numbers page's charts with Chart.js (static/vendor/chart.umd.min.js) from the JSON the page
// carries; the same figures are in the tables under each chart for screen readers and printing.
(function () {
  "use strict";
  var source = document.getElementById("chart-data");
  if (!source || typeof Chart === "undefined") { return; }
  var charts = JSON.parse(source.textContent);
  var palette = ["#0b4f8a", "#1d6b2c", "#8a1c0b", "#6b4c00", "#5b2a86", "#00666b", "#4a4a4a"];
  charts.forEach(function (c) {
    var canvas = document.getElementById("chart-" + c.id);
    if (!canvas) { return; }
    var type = { stacked: "bar", hbar: "bar" }[c.type] || c.type;
    var datasets = c.series.map(function (s, i) {
      return { label: s.name, data: s.data,
               backgroundColor: c.type === "doughnut" ? palette : palette[i % palette.length] };
    });
    new Chart(canvas, {
      type: type,
      data: { labels: c.labels, datasets: datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        indexAxis: c.type === "hbar" ? "y" : "x",
        plugins: { legend: { display: c.series.length > 1 || c.type === "doughnut" } },
        scales: c.type === "doughnut" ? {} : { x: { stacked: c.type === "stacked" },
                                               y: { stacked: c.type === "stacked", beginAtZero: true } }
      }
    });
  });
}());
