// The overview's active runs: progress bars and counts refreshed from /api/active-runs
// a second after the previous answer, without reloading the page (one poll at a time:
// a slow server is not sent a pile of them).
(function () {
  const table = document.getElementById("active-runs");
  if (!table) return;
  const body = table.querySelector("tbody");
  function row(run) {
    const tr = document.createElement("tr");
    tr.dataset.runId = run.id;
    tr.innerHTML = '<td><a></a></td><td class="status"></td><td><progress class="bar" max="100" value="0"></progress> ' +
      '<span class="percent"></span></td><td class="done"></td><td class="passed"></td>' +
      '<td class="failed"></td><td class="errored"></td>';
    const link = tr.querySelector("a");
    link.href = "/runs/" + run.id;
    link.textContent = run.name;
    return tr;
  }
  function update(tr, run) {
    tr.querySelector(".status").textContent = run.status;
    tr.querySelector("progress.bar").value = run.percent;
    tr.querySelector(".percent").textContent = run.percent + "%";
    tr.querySelector(".done").textContent = run.done + "/" + run.total;
    tr.querySelector(".passed").textContent = run.passed;
    tr.querySelector(".failed").textContent = run.failed;
    tr.querySelector(".errored").textContent = run.errored;
  }
  async function refresh() {
    try {
      const response = await fetch("/api/active-runs", { credentials: "same-origin" });
      if (!response.ok) return;
      const { runs } = await response.json();
      const seen = new Set(runs.map((r) => r.id));
      for (const tr of body.querySelectorAll("tr[data-run-id]")) {
        if (!seen.has(tr.dataset.runId)) {
          // Finished since the last refresh: show it at 100 %, then it leaves the list.
          tr.querySelector("progress.bar").value = 100;
          tr.querySelector(".percent").textContent = "100%";
          tr.querySelector(".status").textContent = "finished";
          tr.classList.add("finished");
        }
      }
      for (const run of runs) {
        let tr = body.querySelector('tr[data-run-id="' + run.id + '"]');
        if (!tr) { tr = row(run); body.prepend(tr); }
        update(tr, run);
      }
      const empty = body.querySelector("tr.empty");
      if (empty && runs.length) empty.remove();
    } catch (e) {
      /* the next refresh tries again */
    } finally {
      setTimeout(refresh, 1000);
    }
  }
  setTimeout(refresh, 1000);
})();
