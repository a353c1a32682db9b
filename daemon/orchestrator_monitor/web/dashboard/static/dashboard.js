// The dashboard's pages: read the JSON API, redraw on the event stream. No framework, no CDN.
"use strict";
const Dashboard = (() => {
  const token = new URLSearchParams(location.search).get("access_token");
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const RUN_STATUSES = ["PENDING", "RUNNING", "COMPLETED", "FAILED", "PARTIAL", "CANCELLED"];
  const TASK_STATUSES = ["PENDING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED"];
  const PAGE = 50;

  async function api(path, params) {
    const query = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== "" && v != null));
    const response = await fetch(path + (query.toString() ? "?" + query : ""), { headers, cache: "no-store" });
    if (!response.ok) throw new Error(path + ": " + response.status + " " + (await response.text()));
    return response.json();
  }

  function withToken(path) {
    return token ? path + "?access_token=" + encodeURIComponent(token) : path;
  }

  function cell(content, className) {
    const td = document.createElement("td");
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content == null ? "" : String(content);
    if (className) td.className = className;
    return td;
  }

  function fill(tbody, rows) {
    tbody.replaceChildren(...rows.map((cells) => {
      const tr = document.createElement("tr");
      tr.append(...cells);
      return tr;
    }));
  }

  function bar(done, total, progress) {
    const wrap = document.createElement("span");
    const outer = document.createElement("span");
    outer.className = "bar";
    const inner = document.createElement("span");
    inner.style.width = ((progress || 0) * 100).toFixed(1) + "%";
    outer.appendChild(inner);
    wrap.append(outer, " " + done + "/" + total);
    return wrap;
  }

  function age(seconds) {
    if (seconds == null) return "-";
    const s = Math.floor(seconds);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d" + String(Math.floor((s % 86400) / 3600)).padStart(2, "0") + "h";
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
        live.textContent = "live";
        live.classList.remove("off");
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
      live.textContent = "reconnecting";
      live.classList.add("off");
      setTimeout(connect, 1000);
    }
    connect();
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
    document.getElementById("prev").onclick = () => { state.offset = Math.max(0, state.offset - state.limit); reload(); };
    document.getElementById("next").onclick = () => {
      if (state.offset + state.limit < total) { state.offset += state.limit; reload(); }
    };
  }

  function runsPage() {
    const form = document.getElementById("filters");
    options(form.status, RUN_STATUSES);
    const state = { offset: 0, limit: PAGE };
    async function load() {
      const page = await api("/api/runs", { status: form.status.value, q: form.q.value, limit: state.limit, offset: state.offset });
      fill(document.querySelector("#runs tbody"), page.runs.map((run) => {
        const link = document.createElement("a");
        link.href = withToken("/runs/" + encodeURIComponent(run.run_id));
        link.textContent = run.run_id;
        const tr = [cell(link), cell(run.status, "status-" + run.status), cell(bar(run.tasks_terminal, run.tasks_total, run.progress)),
          cell(age(run.age_seconds)), cell(run.name)];
        return tr;
      }));
      document.querySelectorAll("#runs tbody tr").forEach((tr, i) => { tr.dataset.runId = page.runs[i].run_id; tr.dataset.status = page.runs[i].status; });
      pager(state, page.total, load);
    }
    const reload = debounce(load, 150);
    form.addEventListener("input", () => { state.offset = 0; reload(); });
    form.addEventListener("submit", (e) => e.preventDefault());
    follow((event) => { if (event.run_id || event.type === "MONITOR_STARTED") reload(); }, reload);
    setInterval(() => { if (!document.hidden) reload(); }, 10000); // progress of running runs moves without events
    load();
  }

  function runPage() {
    const runId = decodeURIComponent(location.pathname.split("/")[2]);
    document.getElementById("title").textContent = "run " + runId;
    document.getElementById("back").href = withToken("/");
    const form = document.getElementById("task-filters");
    options(form.status, TASK_STATUSES);
    const state = { offset: 0, limit: PAGE, sort: "task_id", order: "asc" };
    let terminal = false;
    async function load() {
      const run = await api("/api/runs/" + encodeURIComponent(runId), {
        status: form.status.value, tool: form.tool.value, q: form.q.value,
        sort: state.sort, order: state.order, limit: state.limit, offset: state.offset });
      const r = run.run;
      terminal = r.terminal;
      const summary = document.getElementById("summary");
      summary.replaceChildren();
      const status = document.createElement("strong");
      status.id = "run-status";
      status.className = "status-" + r.status;
      status.textContent = r.status;
      summary.append(status, " ", bar(r.tasks_terminal, r.tasks_total, r.progress),
        "  age " + age(r.age_seconds) + "  attempts " + run.attempts.total + " (" + run.attempts.retried_tasks + " tasks retried)");
      const files = document.getElementById("files");
      files.replaceChildren(...Object.entries(run.files).map(([name, href]) => {
        const a = document.createElement("a");
        a.href = withToken(href);
        a.textContent = name;
        return a;
      }).flatMap((a) => [a, " "]));
      fill(document.querySelector("#workstreams tbody"), run.workstreams.map((w) => [cell(w.workstream_id || "(none)"), cell(w.name),
        cell(w.status || "-", "status-" + w.status), cell(bar(w.tasks_terminal, w.tasks_total, w.progress)),
        cell(Object.entries(w.tasks).map(([s, n]) => s + " " + n).join(", "))]));
      fill(document.querySelector("#tools tbody"), run.tools.map((t) => [cell(t.tool || "(none)"), cell(t.tasks), cell(t.succeeded),
        cell(t.failed, t.failed ? "error" : ""), cell(t.skipped + t.cancelled), cell(t.active),
        cell(t.success_rate == null ? "-" : Math.round(t.success_rate * 100) + "%"), cell(t.attempts), cell(t.retried_tasks)]));
      fill(document.querySelector("#errors tbody"), Object.entries(run.errors).map(([type, n]) => [cell(type), cell(n)]));
      options(form.tool, run.tools.map((t) => t.tool).filter((t) => t));
      fill(document.querySelector("#tasks tbody"), run.tasks.rows.map((t) => [cell(t.task_id), cell(t.workstream_id), cell(t.tool),
        cell(t.status, "status-" + t.status), cell(t.attempts), cell(t.started_at), cell(t.finished_at),
        cell(t.error_type ? t.error_type + ": " + (t.error_message || "") : "", "error")]));
      pager(state, run.tasks.total, load);
      timeline(run.timeline);
    }
    function timeline(items) {
      const times = items.flatMap((t) => [Date.parse(t.started_at), Date.parse(t.finished_at || new Date().toISOString())]).filter((n) => !isNaN(n));
      const start = Math.min(...times), span = Math.max(1, Math.max(...times) - start);
      document.getElementById("timeline").replaceChildren(...items.map((t) => {
        const lane = document.createElement("div");
        lane.className = "lane";
        lane.title = t.task_id + " " + t.tool + " " + t.status;
        const piece = document.createElement("span");
        const from = Date.parse(t.started_at), to = t.finished_at ? Date.parse(t.finished_at) : Date.now();
        piece.style.left = ((from - start) / span * 100).toFixed(2) + "%";
        piece.style.width = (Math.max(0, to - from) / span * 100).toFixed(2) + "%";
        piece.className = t.status;
        lane.appendChild(piece);
        return lane;
      }));
    }
    const reload = debounce(load, 150);
    form.addEventListener("input", () => { state.offset = 0; reload(); });
    form.addEventListener("submit", (e) => e.preventDefault());
    document.querySelectorAll("#tasks th[data-sort]").forEach((th) => th.addEventListener("click", () => {
      state.order = state.sort === th.dataset.sort && state.order === "asc" ? "desc" : "asc";
      state.sort = th.dataset.sort;
      reload();
    }));
    follow((event) => { if (event.run_id === runId) reload(); }, reload);
    setInterval(() => { if (!document.hidden && !terminal) reload(); }, 5000);
    load();
  }

  return { runsPage, runPage };
})();
