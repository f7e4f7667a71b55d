// The page's little script: drag-and-drop onto the upload form, and the import's live progress.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const drop = document.getElementById("drop");
  const input = document.getElementById("file");
  if (drop && input) {
    ["dragenter", "dragover"].forEach((name) =>
      drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); }));
    ["dragleave", "drop"].forEach((name) =>
      drop.addEventListener(name, () => drop.classList.remove("over")));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        document.getElementById("upload").submit();
      }
    });
  }

  const profile = document.getElementById("profile");
  if (profile) {
    profile.addEventListener("change", () => document.getElementById("profile-form").submit());
  }

  // Two columns for one field are refused on the spot (the server refuses them too).
  const mapping = document.getElementById("mapping-form");
  if (mapping) {
    const note = document.getElementById("twice");
    const selects = Array.from(mapping.querySelectorAll("select.field"));
    const check = () => {
      const by = new Map();
      selects.forEach((s) => { if (s.value) by.set(s.value, [...(by.get(s.value) || []), s]); });
      const twice = [...by.values()].filter((list) => list.length > 1);
      selects.forEach((s) => s.setAttribute("aria-invalid", "false"));
      twice.flat().forEach((s) => s.setAttribute("aria-invalid", "true"));
      note.textContent = twice.map((list) => `${list.map((s) => s.dataset.column).join(" and ")} `
        + `both feed ${list[0].selectedOptions[0].textContent}: choose one`).join("; ");
      mapping.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = twice.length > 0; });
    };
    selects.forEach((s) => s.addEventListener("change", check));
    // A "did you mean" offered beside a column: one press chooses it (saved with the form).
    mapping.querySelectorAll("button.guess").forEach((b) => b.addEventListener("click", () => {
      const select = selects.find((s) => s.dataset.column === b.dataset.column);
      if (select) { select.value = b.dataset.field; check(); select.focus(); }
    }));
    check();
  }

  // Keyboard flow on the check page: after a fix the page comes back at the fixed row, with
  // the next error's box focused (type, Enter, and on to the next); n and p go to the next
  // and the previous error from wherever the focus is.
  const table = document.querySelector("table.rows");
  if (table) {
    const boxes = () => Array.from(table.querySelectorAll("tr.invalid form.fix [name=value]"));
    const number = (el) => parseInt((el.closest("tr") || { id: "row-0" }).id.slice(4), 10) || 0;
    const go = (box) => { if (box) { box.focus(); box.closest("tr").scrollIntoView({ block: "center" }); } };
    if (location.hash.startsWith("#row-")) {
      const fixed = parseInt(location.hash.slice(5), 10) || 0;
      go(boxes().find((b) => number(b) > fixed) || boxes()[0]);
    }
    document.addEventListener("keydown", (event) => {
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      if (event.target.closest && event.target.closest("input, select, textarea")) return;
      if (event.key !== "n" && event.key !== "p") return;
      const here = document.activeElement ? number(document.activeElement) : 0;
      const all = boxes();
      event.preventDefault();
      go(event.key === "n" ? all.find((b) => number(b) > here) || all[0]
                           : [...all].reverse().find((b) => number(b) < here) || all[all.length - 1]);
    });
  }

  const box = document.getElementById("progress");
  if (box) {
    const show = (id, text) => { document.getElementById(id).textContent = text; };
    const poll = async () => {
      const answer = await fetch(box.dataset.url, { credentials: "same-origin" });
      const state = await answer.json();
      if (state.finished || (box.dataset.queued === "1" && !state.queued)) {
        window.location.reload();  // done, or its turn has come
        return;
      }
      const bar = document.getElementById("bar");
      bar.max = state.total || 1;
      bar.value = state.done;
      show("done", state.done);
      show("total", state.total);
      show("rate", state.rows_per_second);
      show("failures", state.failures);
      show("eta", state.eta_seconds === null ? "…" : `${state.eta_seconds} s`);
      setTimeout(poll, 400);
    };
    setTimeout(poll, 200);
  }
});
