// ccr-supervisor console: the few behaviours htmx does not cover. Answers go to the
// public API (/v1/...) with the sign-in cookie; the page never sees a token.
// Loaded with `defer` after htmx; no inline script anywhere (the CSP forbids it).
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const canAnswer = () => {
    const role = document.body.dataset.role;
    return role === "approver" || role === "admin";
  };
  const seg = encodeURIComponent;

  // ---- talking to the API -------------------------------------------------------------
  // A body already written as JSON text, sent as it is (see `allow-edited`).
  class JsonText {
    constructor(text) { this.text = text; }
  }
  async function api(method, path, body) {
    const init = { method, headers: { accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = body instanceof JsonText ? body.text : JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    let data = null;
    try { data = await resp.json(); } catch (_) { /* empty body */ }
    if (resp.status === 401) { window.location.assign("/ui/sign-in"); }
    if (!resp.ok) {
      const msg = data && data.error ? data.error.message || data.error.code : "HTTP " + resp.status;
      throw new Error(msg);
    }
    return data;
  }
  const answer = (session, request, body) =>
    api("POST", "/v1/sessions/" + seg(session) + "/permissions/" + seg(request), body);

  function toast(text, bad) {
    const t = $("#toast");
    if (!t) return;
    t.textContent = text;
    t.classList.toggle("bad", !!bad);
    t.classList.add("shown");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove("shown"), 4000);
  }

  function refreshLists() {
    for (const id of ["#inbox", "#pending", "#sessions", "#prompt-state"]) {
      const el = $(id);
      if (el && window.htmx) window.htmx.trigger(el, "refresh");
    }
  }

  // ---- ages tick ----------------------------------------------------------------------
  function ageText(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  setInterval(() => {
    const now = Date.now();
    for (const el of $$(".age[data-since]")) el.textContent = ageText(now - Number(el.dataset.since));
  }, 1000);

  // ---- the deny dialog ----------------------------------------------------------------
  // Opens for `targets` (an array of {session, request}). A confirmation takes the targets
  // the dialog holds at that moment and answers exactly those: the dialog may be opened
  // again (for other prompts) while an earlier deny is still in flight.
  let denyTargets = [];
  function openDeny(targets) {
    const dlg = $("#deny-dialog");
    if (!dlg || targets.length === 0) return;
    denyTargets = targets;
    $("#deny-message").value = "";
    $("#deny-interrupt").checked = false;
    dlg.showModal();
    $("#deny-message").focus();
  }
  async function confirmDeny() {
    const dlg = $("#deny-dialog");
    const picked = denyTargets;
    denyTargets = [];
    const message = $("#deny-message").value.trim();
    const body = { behavior: "deny" };
    if (message) body.message = message;
    if ($("#deny-interrupt").checked) body.interrupt = true;
    dlg.close();
    if (picked.length === 0) {
      toast("Nothing was denied: open the deny dialog from a prompt again.", true);
      return;
    }
    for (const t of picked) {
      try {
        await answer(t.session, t.request, body);
        settled(t, "denied");
      } catch (e) {
        toast("Deny failed: " + e.message, true);
      }
    }
  }

  // After an answer: drop the row at once (the event stream confirms it everywhere).
  function settled(t, status) {
    for (const row of $$(".prompt-row")) {
      if (row.dataset.session === t.session && row.dataset.request === t.request) row.remove();
    }
    const page = $("#prompt");
    if (page && page.dataset.session === t.session && page.dataset.request === t.request) {
      const s = $("#answer-status");
      if (s) s.textContent = status;
      for (const b of $$(".answer button")) b.disabled = true;
    }
    refreshLists();
  }

  const target = (el) => ({ session: el.dataset.session, request: el.dataset.request });

  async function allow(t, body) {
    try {
      await answer(t.session, t.request, body || { behavior: "allow" });
      settled(t, "allowed");
    } catch (e) {
      toast("Allow failed: " + e.message, true);
    }
  }

  // ---- inbox rows: clicks, selection, keyboard ------------------------------------------
  const rows = () => $$("#inbox .prompt-row, #pending .prompt-row");
  let currentKey = null;
  const keyOf = (row) => row.dataset.session + "\u0000" + row.dataset.request;
  function setCurrent(row) {
    for (const r of rows()) r.classList.toggle("current", r === row);
    currentKey = row ? keyOf(row) : null;
    if (row) { row.focus({ preventScroll: true }); row.scrollIntoView({ block: "nearest" }); }
  }
  const current = () => rows().find((r) => keyOf(r) === currentKey) || null;

  document.addEventListener("click", (ev) => {
    const el = ev.target;
    if (!(el instanceof Element)) return;
    const row = el.closest(".prompt-row");
    if (row && el.matches("button.allow")) { ev.preventDefault(); allow(target(row)); return; }
    if (row && el.matches("button.deny")) { ev.preventDefault(); openDeny([target(row)]); return; }
    if (row && !el.closest("a, button, input")) setCurrent(row);
    if (el.matches("#deny-confirm")) { ev.preventDefault(); confirmDeny(); }
    if (el.matches("#deny-cancel")) { ev.preventDefault(); $("#deny-dialog").close(); }
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const el = ev.target;
    if (el instanceof Element && el.closest("input, textarea, select, dialog")) return;
    const list = rows();
    if (list.length === 0) return;
    let i = list.findIndex((r) => keyOf(r) === currentKey);
    const row = i >= 0 ? list[i] : null;
    switch (ev.key) {
      case "j": setCurrent(list[Math.min(i + 1, list.length - 1)]); break;
      case "k": setCurrent(list[Math.max(i - 1, 0)]); break;
      case "Enter": if (row) window.location.assign($("a.open", row).getAttribute("href")); break;
      case "a":
        if (!row || !canAnswer() || !$("button.allow", row)) return;
        // A default-to-no prompt never takes a one-key allow: open it instead.
        if (row.dataset.defaultNo === "true") { window.location.assign($("a.open", row).getAttribute("href")); break; }
        allow(target(row));
        break;
      case "d": if (row && canAnswer() && $("button.deny", row)) openDeny([target(row)]); break;
      case "x": { const c = row && $("input.select", row); if (c) c.checked = !c.checked; break; }
      default: return;
    }
    ev.preventDefault();
  });

  // Live updates replace the rows: keep the current row where it was.
  document.addEventListener("htmx:afterSwap", () => {
    // The prompt on this page was settled elsewhere: no more answers from here.
    if ($("#prompt-state [data-gone]")) for (const b of $$(".answer button")) b.disabled = true;
    const row = current();
    for (const r of rows()) r.classList.toggle("current", r === row);
  });
  // (Re)connected to the event stream: catch up on anything that happened meanwhile.
  document.addEventListener("htmx:sseOpen", refreshLists);

  // ---- bulk answers -------------------------------------------------------------------
  // The prompts a bulk answer goes to are fixed when its dialog opens: a prompt that
  // arrives while it is open is not answered by it ("All shown" ticks the rows shown
  // when it is ticked, never later ones).
  let bulkBehavior = "allow";
  let bulkTargets = [];
  const selected = () =>
    $$("#inbox .prompt-row").filter((r) => { const c = $("input.select", r); return c && c.checked; });
  function openBulk(behavior) {
    bulkTargets = selected().map(target);
    const n = bulkTargets.length;
    if (n === 0) { toast("Select prompts first (x, or the checkboxes).", true); return; }
    bulkBehavior = behavior;
    $("#bulk-count").textContent = String(n);
    $("#bulk-title").textContent = behavior === "allow" ? "Allow " + n + " prompts" : "Deny " + n + " prompts";
    $("#bulk-deny-fields").hidden = behavior !== "deny";
    $("#bulk-message").value = "";
    $("#bulk-dialog").showModal();
  }
  async function confirmBulk() {
    const picked = bulkTargets;
    bulkTargets = [];
    $("#bulk-dialog").close();
    const message = $("#bulk-message").value.trim();
    const decisions = picked.map((t) => {
      const d = { session_id: t.session, request_id: t.request, behavior: bulkBehavior };
      if (bulkBehavior === "deny" && message) d.message = message;
      return d;
    });
    const out = $("#bulk-result");
    try {
      const reply = await api("POST", "/v1/decisions", { decisions });
      const results = reply.results || [];
      const ok = results.filter((r) => r.status === 200);
      const failed = results.filter((r) => r.status !== 200);
      for (const r of ok) settled({ session: r.session_id, request: r.request_id }, bulkBehavior);
      out.textContent = ok.length + " answered, " + failed.length + " failed" +
        (failed.length ? ": " + failed.map((r) => r.request_id + " (" + (r.error ? r.error.code : r.status) + ")").join(", ") : "");
    } catch (e) {
      out.textContent = "Bulk answer failed: " + e.message;
    }
    const all = $("#select-all");
    if (all) all.checked = false;
    refreshLists();
  }
  document.addEventListener("click", (ev) => {
    const el = ev.target;
    if (!(el instanceof Element)) return;
    if (el.matches("#bulk-allow")) openBulk("allow");
    else if (el.matches("#bulk-deny")) openBulk("deny");
    else if (el.matches("#bulk-confirm")) { ev.preventDefault(); confirmBulk(); }
    else if (el.matches("#bulk-cancel")) { ev.preventDefault(); $("#bulk-dialog").close(); }
  });
  document.addEventListener("change", (ev) => {
    if (ev.target instanceof Element && ev.target.matches("#select-all")) {
      for (const c of $$("#inbox input.select")) c.checked = ev.target.checked;
    }
  });

  // ---- one prompt's page ----------------------------------------------------------------
  function promptPage() {
    const page = $("#prompt");
    if (!page || !canAnswer()) return;
    const t = target(page);
    const on = (sel, fn) => { const b = $(sel); if (b) b.addEventListener("click", fn); };
    on("#allow", () => allow(t));
    on("#deny", () => openDeny([t]));
    on("#edit", () => { $("#editor").hidden = false; $("#edited-input").focus(); });
    on("#allow-edited", () => {
      const err = $("#edit-error");
      const text = $("#edited-input").value;
      let input;
      try {
        input = JSON.parse(text);
      } catch (e) {
        err.textContent = "Not valid JSON: " + e.message;
        err.hidden = false;
        return;
      }
      if (input === null || typeof input !== "object" || Array.isArray(input)) {
        err.textContent = "The input must be a JSON object.";
        err.hidden = false;
        return;
      }
      err.hidden = true;
      // The operator's text itself, not `input` written again: JSON.parse reads every
      // number as a double, so an integer above 2^53 would reach the session changed.
      // `text` is one JSON object (parsed just above), so the body is valid JSON.
      allow(t, new JsonText('{"behavior":"allow","updated_input":' + text + "}"));
    });
    on("#answer-question", async () => {
      const err = $("#edit-error");
      let body;
      try { body = JSON.parse($("#question-answer").value); } catch (e) {
        err.textContent = "Not valid JSON: " + e.message; err.hidden = false; return;
      }
      err.hidden = true;
      try {
        await api("POST", "/v1/sessions/" + seg(t.session) + "/questions/" + seg(t.request), body);
        $("#answer-status").textContent = "answered";
        $("#answer-question").disabled = true;
      } catch (e) { toast("Answer failed: " + e.message, true); }
    });
  }

  // ---- a session's page -----------------------------------------------------------------
  function sessionPage() {
    const page = $("#session");
    if (!page) return;
    const id = page.dataset.session;
    const status = $("#control-status");
    const b = $("#interrupt");
    if (b) b.addEventListener("click", async () => {
      try {
        await api("POST", "/v1/sessions/" + seg(id) + "/interrupt");
        status.textContent = "Interrupted.";
      } catch (e) { status.textContent = "Interrupt failed: " + e.message; }
    });
    const form = $("#send-message");
    if (form) form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = $("#message-content").value;
      if (!text.trim()) return;
      try {
        await api("POST", "/v1/sessions/" + seg(id) + "/messages", { content: text });
        $("#message-content").value = "";
        status.textContent = "Sent.";
      } catch (e) { status.textContent = "Send failed: " + e.message; }
    });
  }

  // ---- the policy's evaluate form ---------------------------------------------------------
  function policyPage() {
    const form = $("#evaluate");
    if (!form) return;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = $("#evaluate-result");
      let input;
      try { input = JSON.parse($("#eval-input").value || "{}"); } catch (e) {
        out.textContent = "Input is not valid JSON: " + e.message; return;
      }
      const body = { tool_name: $("#eval-tool").value, input };
      const session = $("#eval-session").value.trim();
      if (session) body.session_id = session;
      try {
        out.textContent = JSON.stringify(await api("POST", "/v1/policy/evaluate", body), null, 2);
      } catch (e) { out.textContent = "Error: " + e.message; }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    promptPage();
    sessionPage();
    policyPage();
  });
})();
