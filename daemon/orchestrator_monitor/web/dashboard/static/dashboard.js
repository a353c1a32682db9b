// The dashboard's pages: read the JSON API, redraw on the event stream. No framework, no CDN.
// Failures first: bars are split by outcome (failed leftmost), a run page opens with its failed tasks.
"use strict";
const Dashboard = (() => {
  const token = new URLSearchParams(location.search).get("access_token");
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const RUN_STATUSES = ["PENDING", "RUNNING", "COMPLETED", "FAILED", "PARTIAL", "CANCELLED"];
  const RUN_TERMINAL = ["COMPLETED", "FAILED", "PARTIAL", "CANCELLED"];
  const TASK_STATUSES = ["PENDING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED"];
  const OUTCOMES = ["failed", "cancelled", "skipped", "succeeded", "running", "waiting"];
  const HEALTH_EVENTS = ["HEALTH_CHANGED", "SAFE_MODE_ENTERED", "SAFE_MODE_EXITED", "ESCALATION", "MONITOR_STARTED"];
  const PAGE = 50;

  async function get(path, params) {
    const query = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== "" && v != null));
    return fetch(path + (query.toString() ? "?" + query : ""), { headers, cache: "no-store" });
  }

  async function api(path, params) {
    const response = await get(path, params);
    if (!response.ok) throw new Error(path + ": " + response.status + " " + (await response.text()));
    return response.json();
  }

  function withToken(path) {
    return token ? path + "?access_token=" + encodeURIComponent(token) : path;
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    node.append(...children.filter((c) => c != null));
    return node;
  }

  function cell(content, className) {
    const td = document.createElement("td");
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content == null ? "" : String(content);
    if (className) td.className = className;
    return td;
  }

  function fill(tbody, rows, emptyText) {
    const columns = tbody.parentElement.querySelectorAll("thead th").length;
    if (!rows.length && emptyText) {
      tbody.replaceChildren(el("tr", {}, el("td", { className: "empty", colSpan: columns, textContent: emptyText })));
      return;
    }
    tbody.replaceChildren(...rows.map((cells) => {
      const tr = document.createElement("tr");
      tr.append(...cells);
      return tr;
    }));
  }

  // A bar split by outcome, failures first; every outcome present gets a visible sliver.
  function bar(outcomes) {
    const total = OUTCOMES.reduce((sum, o) => sum + (outcomes[o] || 0), 0);
    const outer = el("span", { className: "bar", role: "img" });
    const words = [];
    for (const outcome of OUTCOMES) {
      const n = outcomes[outcome] || 0;
      if (!n || !total) continue;
      words.push(n + " " + outcome);
      const part = el("span", { className: outcome, title: n + " " + outcome });
      part.dataset.outcome = outcome;
      part.style.width = (n / total * 100).toFixed(2) + "%";
      part.style.minWidth = "3px";
      outer.appendChild(part);
    }
    outer.setAttribute("aria-label", words.join(", ") || "no tasks");
    const wrap = el("span", {}, outer);
    if (outcomes.failed) wrap.appendChild(el("span", { className: "bar-note", textContent: outcomes.failed + " failed" }));
    return wrap;
  }

  function legend(target) {
    target.replaceChildren(...OUTCOMES.map((o) => {
      const swatch = el("i");
      swatch.style.background = "var(--" + o + ")";
      return el("span", {}, swatch, o);
    }));
  }

  function duration(seconds) {
    if (seconds == null) return "-";
    if (seconds < 10 && seconds !== Math.floor(seconds)) return seconds.toFixed(1) + "s";
    const s = Math.floor(seconds);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d" + String(Math.floor((s % 86400) / 3600)).padStart(2, "0") + "h";
  }

  function size(bytes) {
    if (bytes == null) return "-";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
    return (unit ? value.toPrecision(3) : String(value)) + " " + units[unit];
  }

  // ISO times on one line, to the second, in UTC as stored: "2026-11-24 10:00:03".
  function when(iso) {
    if (!iso) return "-";
    return String(iso).replace("T", " ").replace(/(\.\d+)?(Z|[+-]00:?00)?$/, "");
  }

  function options(select, values) {
    const kept = select.value;
    select.replaceChildren(new Option("all", ""), ...values.map((v) => new Option(v, v)));
    select.value = values.includes(kept) ? kept : "";
  }

  // The event stream over fetch (EventSource cannot send the Authorization header), resumed with
  // Last-Event-ID after every disconnect; `reset` means the gap was too long to replay: reload data.
  function follow(onEvent, onReset) {
    const live = document.getElementById("live");
    let lastId = null;
    async function connect() {
      try {
        const h = Object.assign({}, headers);
        if (lastId !== null) h["Last-Event-ID"] = String(lastId);
        const response = await fetch("/events", { headers: h, cache: "no-store" });
        if (!response.ok) throw new Error("events: " + response.status);
        live.dataset.connected = "1";
        live.dispatchEvent(new Event("change"));
        if (lastId !== null) onReset();
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const fields = {};
            for (const line of block.split("\n")) {
              const colon = line.indexOf(":");
              if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1).trimStart();
            }
            if (fields.id) lastId = Number(fields.id);
            if (fields.event === "reset") onReset();
            else if (fields.data) onEvent(JSON.parse(fields.data));
          }
        }
      } catch (err) {
        console.warn(err);
      }
      live.dataset.connected = "";
      live.dispatchEvent(new Event("change"));
      setTimeout(connect, 1000);
    }
    connect();
  }

  // The badge: "live" while connected and the page can still change, "final" once it cannot.
  function liveBadge(isFinal) {
    const live = document.getElementById("live");
    const show = () => {
      const connected = live.dataset.connected === "1";
      const final = isFinal();
      live.textContent = final ? "final" : connected ? "live" : "reconnecting";
      live.className = "live" + (final ? " final" : connected ? "" : " off");
    };
    live.addEventListener("change", show);
    return show;
  }

  function debounce(fn, ms) {
    let timer = null;
    return () => {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  function pager(state, total, reload) {
    document.getElementById("page").textContent =
      total ? state.offset + 1 + "-" + Math.min(total, state.offset + state.limit) + " of " + total : "none";
    document.getElementById("prev").disabled = state.offset === 0;
    document.getElementById("next").disabled = state.offset + state.limit >= total;
    document.getElementById("prev").onclick = () => { state.offset = Math.max(0, state.offset - state.limit); reload(); };
    document.getElementById("next").onclick = () => {
      if (state.offset + state.limit < total) { state.offset += state.limit; reload(); }
    };
  }

  async function health() {
    const banner = document.getElementById("health");
    try {
      const response = await get("/api/health");
      const report = await response.json();
      const failing = Object.entries(report.checks || {}).filter(([, c]) => c.status !== "ok");
      const parts = [];
      if (failing.length) parts.push("failing checks: " + failing.map(([name, c]) => name + " (" + c.detail + ")").join("; "));
      if ((report.safe_modes || []).length) parts.push("safe mode: " + report.safe_modes.join(", "));
      if ((report.escalations || []).length) parts.push("escalated: " + report.escalations.join(", "));
      const lost = (report.daemons || []).filter((d) => !d.live).map((d) => d.daemon_id);
      if (lost.length) parts.push("daemons without a lease (their runs go to the others): " + lost.join(", "));
      const bad = !report.healthy || parts.length > 0;
      banner.className = "banner" + (bad ? " bad" : "");
      banner.dataset.healthy = report.healthy ? "1" : "0";
      banner.textContent = (report.healthy ? "Monitor healthy" : "Monitor unhealthy") +
        (parts.length ? ": " + parts.join(" · ") : ": every check passing, no safe mode, no escalation") +
        ((report.daemons || []).length
          ? " · daemons: " + report.daemons.map((d) => d.daemon_id + (d.live ? "" : " (lease lost)")).join(", ")
          : "");
    } catch (err) {
      banner.className = "banner bad";
      banner.textContent = "health unknown: " + err.message;
    }
  }

  function runsPage() {
    const form = document.getElementById("filters");
    options(form.status, RUN_STATUSES);
    legend(document.getElementById("legend"));
    liveBadge(() => false)();
    const state = { offset: 0, limit: PAGE };
    async function load() {
      const params = { status: form.status.value, q: form.q.value, sort: form.sort.value, limit: state.limit, offset: state.offset };
      let page = await api("/api/runs", params);
      if (page.total && state.offset >= page.total) {  // the page emptied under us: show the last one
        state.offset = Math.max(0, Math.floor((page.total - 1) / state.limit) * state.limit);
        page = await api("/api/runs", Object.assign(params, { offset: state.offset }));
      }
      counts(page.by_status);
      const rows = page.runs.map((run) => {
        const link = el("a", { href: withToken("/runs/" + encodeURIComponent(run.run_id)), textContent: run.run_id });
        const cells = [cell(link, "id"), cell(run.name && run.name !== run.run_id ? run.name : ""),
          cell(run.status, "status-" + run.status), cell(bar(run.outcomes)),
          cell(run.tasks_terminal + "/" + run.tasks_total, "num"), cell(duration(run.duration_seconds), "num"),
          cell(run.terminal ? when(run.finished_at) : "-", "time"), cell(when(run.started_at || run.created_at), "time")];
        const tr = el("tr", {}, ...cells);
        tr.dataset.runId = run.run_id;
        tr.dataset.status = run.status;
        return tr;
      });
      const tbody = document.querySelector("#runs tbody");
      if (rows.length) tbody.replaceChildren(...rows);
      else fill(tbody, [], "no runs match");
      pager(state, page.total, load);
    }
    function counts(byStatus) {
      const nav = document.getElementById("counts");
      const total = Object.values(byStatus).reduce((a, b) => a + b, 0);
      const button = (label, status, n) => {
        const b = el("button", { type: "button" }, label, el("span", { className: "n", textContent: String(n) }));
        b.dataset.status = status;
        b.setAttribute("aria-pressed", String(form.status.value === status));
        b.onclick = () => { form.status.value = status; state.offset = 0; load(); };
        return b;
      };
      nav.replaceChildren(button("all", "", total),
        ...RUN_STATUSES.filter((s) => byStatus[s]).map((s) => button(s.toLowerCase(), s, byStatus[s])));
    }
    const reload = debounce(load, 150);
    const reloadHealth = debounce(health, 300);
    form.addEventListener("input", () => { state.offset = 0; reload(); });
    form.addEventListener("submit", (e) => e.preventDefault());
    follow((event) => {
      if (event.run_id || event.type === "MONITOR_STARTED") reload();
      if (HEALTH_EVENTS.includes(event.type)) reloadHealth();
    }, () => { reload(); reloadHealth(); });
    setInterval(() => { if (!document.hidden) { reload(); reloadHealth(); } }, 10000); // progress moves without events
    load();
    health();
  }

  function runPage() {
    const runId = decodeURIComponent(location.pathname.split("/")[2]);
    document.getElementById("title").textContent = "run " + runId;
    document.title = runId + " · orchestrator";
    document.getElementById("back").href = withToken("/");
    const form = document.getElementById("task-filters");
    options(form.status, TASK_STATUSES);
    const state = { offset: 0, limit: PAGE, sort: "task_id", order: "asc" };
    let final = false;
    const verifyBox = el("div");
    const showLive = liveBadge(() => final);
    async function load() {
      const run = await api("/api/runs/" + encodeURIComponent(runId), {
        status: form.status.value, tool: form.tool.value, q: form.q.value,
        sort: state.sort, order: state.order, limit: state.limit, offset: state.offset });
      const r = run.run;
      const archived = run.archival.some((a) => a.status === "SUCCEEDED") || "bag-info.txt" in run.files;
      final = r.terminal && archived && "report.html" in run.files;
      showLive();
      document.title = runId + " · " + r.status + " · orchestrator";
      const badge = document.getElementById("run-status");
      badge.className = "badge status-" + r.status;
      badge.textContent = r.status;
      summary(run);
      failures(run);
      outputs(run, archived);
      fill(document.querySelector("#workstreams tbody"), run.workstreams.map((w) => [cell(w.workstream_id || "(none)", "id"), cell(w.name),
        cell(w.status || "-", "status-" + w.status), cell(bar(w.outcomes)), cell(w.tasks_terminal + "/" + w.tasks_total, "num")]),
        "no workstreams");
      fill(document.querySelector("#tools tbody"), run.tools.map((t) => [cell(t.tool || "(none)"), cell(t.tasks, "num"), cell(t.succeeded, "num"),
        cell(t.failed, "num" + (t.failed ? " error" : "")), cell(t.skipped + t.cancelled, "num"), cell(t.active, "num"),
        cell(t.success_rate == null ? "-" : Math.round(t.success_rate * 100) + "%", "num"), cell(t.attempts, "num"), cell(t.retried_tasks, "num")]),
        "no tasks");
      fill(document.querySelector("#errors tbody"), Object.entries(run.errors).map(([type, n]) => [cell(type, "error"), cell(n, "num")]), "none");
      options(form.tool, run.tools.map((t) => t.tool).filter((t) => t));
      fill(document.querySelector("#tasks tbody"), run.tasks.rows.map((t) => [cell(t.task_id, "id"), cell(t.workstream_id, "id"), cell(t.tool),
        cell(t.status, "status-" + t.status), cell(t.attempts, "num"), cell(when(t.started_at), "time"), cell(when(t.finished_at), "time"),
        cell(t.error_type ? t.error_type + ": " + (t.error_message || "") : "", "error")]), "no tasks match");
      pager(state, run.tasks.total, load);
    }
    function summary(run) {
      const r = run.run;
      const facts = el("span", { className: "facts" },
        (r.terminal ? "took " : "running for ") + duration(r.duration_seconds) +
        " · started " + when(r.started_at || r.created_at) + (r.terminal ? " · finished " + when(r.finished_at) : "") +
        " · " + r.tasks_terminal + "/" + r.tasks_total + " tasks done · attempts " + run.attempts.total +
        " (" + run.attempts.retried_tasks + (run.attempts.retried_tasks === 1 ? " task" : " tasks") + " retried)");
      const legendBox = el("span", { className: "legend" });
      legend(legendBox);
      document.getElementById("summary").replaceChildren(bar(r.outcomes), facts, el("br"), legendBox);
    }
    function failures(run) {
      const section = document.getElementById("failures");
      section.hidden = run.failed_total === 0;
      const shown = run.failed_tasks.length;
      document.getElementById("failures-title").textContent = "What failed: " + run.failed_total + " task" + (run.failed_total === 1 ? "" : "s") +
        (shown < run.failed_total ? " (the latest " + shown + ")" : "");
      fill(document.querySelector("#failed tbody"), run.failed_tasks.map((t) => {
        const log = t.log ? el("a", { href: withToken("/runs/" + encodeURIComponent(runId) + "/logs/" + encodeURIComponent(t.task_id)), textContent: "log" }) : "-";
        return [cell(t.task_id, "id"), cell(t.workstream_id || "-", "id"), cell(t.tool || "-"), cell(t.attempts, "num"),
          cell(t.error_type || "-", "error"), cell(t.error_message || "", "message"), cell(when(t.finished_at), "time"), cell(log)];
      }));
      document.querySelectorAll("#failed tbody tr").forEach((tr, i) => { tr.dataset.task = run.failed_tasks[i].task_id; });
    }
    function outputs(run, archived) {
      const latest = run.archival[0];
      const lines = [];
      if (latest && latest.status === "FAILED") lines.push(el("div", { className: "error", textContent: "archiving failed: " + (latest.error || "") }));
      else if (latest && latest.status === "STARTED") lines.push(el("div", { textContent: "archiving to " + latest.archive_path + "…" }));
      else if (archived && latest) lines.push(el("div", { textContent: "archived to " + latest.archive_path + " (" + latest.file_count + " files, " + size(latest.total_bytes) + ")" }));
      else if (archived) lines.push(el("div", { textContent: "archived" }));
      else lines.push(el("div", { textContent: run.run.terminal ? "not archived yet" : "archived once the run has finished" }));
      if (archived && !verifyBox.hasChildNodes()) {
        const result = el("span", { id: "verify-result" });
        const button = el("button", { type: "button", id: "verify", textContent: "verify the archive now" });
        button.onclick = async () => {
          button.disabled = true;
          result.textContent = " checking every file…";
          try {
            const response = await get("/api/runs/" + encodeURIComponent(runId) + "/verify");
            const v = await response.json();
            result.className = v.ok ? "" : "error";
            result.textContent = v.error ? " " + v.error : v.ok ? " valid: " + v.payload_files + " payload files, " + v.tag_files + " tag files match their manifests"
              : " " + v.problem_count + " problems: " + v.problems.join("; ");
          } finally {
            button.disabled = false;
          }
        };
        verifyBox.replaceChildren(button, result);
      }
      lines.push(el("div", { textContent: "report: " + ("report.html" in run.files ? "written" : "not written yet") }));
      const links = Object.entries(run.files).map(([name, href]) => el("a", { href: withToken(href), textContent: name }));
      if (links.length) lines.push(el("div", {}, ...links.flatMap((a) => [a, " "])));
      document.getElementById("archive").replaceChildren(...lines, verifyBox);
    }
    async function timeline() {
      const response = await get("/runs/" + encodeURIComponent(runId) + "/timeline.svg");
      const box = document.getElementById("timeline");
      if (!response.ok) return;
      const svg = await response.text();  // drawn and escaped by the server (reports/drawing.py)
      box.innerHTML = svg || "<p class=\"empty\">No task has started.</p>";
      const drawn = response.headers.get("X-Tasks-Drawn"), total = response.headers.get("X-Tasks-Total");
      if (svg && drawn !== total) box.appendChild(el("p", { className: "empty", textContent: drawn + " of " + total + " tasks drawn: failed, cancelled, running and retried first" }));
    }
    async function events() {
      const response = await get("/api/runs/" + encodeURIComponent(runId) + "/events");
      if (!response.ok) return;
      const lines = (await response.json()).events;
      fill(document.querySelector("#events tbody"), lines.slice().reverse().map((e) => [cell(e.seq, "num"), cell(when(e.time), "time"),
        cell(e.type, e.type.includes("FAIL") || e.type === "ESCALATION" ? "error" : ""),
        cell(Object.entries(e.data || {}).map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join("  "), "message")]), "no events yet");
    }
    const reload = debounce(() => { load(); timeline(); events(); }, 150);
    form.addEventListener("input", () => { state.offset = 0; debounce(load, 150)(); });
    form.addEventListener("submit", (e) => e.preventDefault());
    document.querySelectorAll("#tasks th[data-sort]").forEach((th) => th.addEventListener("click", () => {
      state.order = state.sort === th.dataset.sort && state.order === "asc" ? "desc" : "asc";
      state.sort = th.dataset.sort;
      load();
    }));
    follow((event) => { if (event.run_id === runId) reload(); }, reload);
    setInterval(() => { if (!document.hidden && !final) reload(); }, 5000);
    load();
    timeline();
    events();
  }

  return { runsPage, runPage };
})();
