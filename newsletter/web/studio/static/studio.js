// Enhancements only: every page works without this file.
// The edit page checks and previews the form as you type (POST without saving): a change
// is checked at once unless a check is already on its way, in which case one more check
// follows it with the form as it is then (so typing never queues a check per key);
// the progress page polls the ledger's counts.
import { initAll } from "./govuk/govuk-frontend.min.js";

document.body.classList.add("js-enabled", "govuk-frontend-supported");
initAll();

function csrfToken(form) {
  const field = form.querySelector("input[name=csrf_token]");
  return field ? field.value : "";
}

function showFieldErrors(form, errors) {
  const byField = new Map();
  for (const error of errors) {
    if (!byField.has(error.field)) byField.set(error.field, error.message);
  }
  for (const group of form.querySelectorAll("[data-field]")) {
    const name = group.getAttribute("data-field");
    const slot = document.getElementById(name + "-error");
    const message = byField.get(name);
    group.classList.toggle("govuk-form-group--error", Boolean(message));
    if (slot) {
      slot.hidden = !message;
      slot.querySelector(".studio-error-text").textContent = message || "";
    }
    const input = document.getElementById(name);
    if (input) {
      for (const kind of ["input", "textarea"]) {
        if (input.classList.contains("govuk-" + kind)) {
          input.classList.toggle("govuk-" + kind + "--error", Boolean(message));
        }
      }
    }
  }
}

function setWidth(preview, pixels) {
  for (const frame of preview.querySelectorAll(".studio-frame")) frame.width = pixels;
  for (const button of preview.querySelectorAll(".studio-width")) {
    button.setAttribute("aria-pressed", String(button.getAttribute("data-width") === pixels));
  }
}

function enhanceEditor(form) {
  const preview = document.getElementById("preview");
  const summary = document.getElementById("error-summary-slot");
  let sent = 0;
  let busy = false;
  let again = false;
  let width = "680";
  const showWidths = () => {
    const group = preview.querySelector(".studio-widths");
    if (group) group.hidden = false;
    setWidth(preview, width);
  };
  showWidths();
  preview.addEventListener("click", (event) => {
    const button = event.target.closest(".studio-width");
    if (!button) return;
    width = button.getAttribute("data-width");
    setWidth(preview, width);
  });
  const check = async () => {
    const mine = ++sent;
    busy = true;
    preview.setAttribute("aria-busy", "true");
    let response;
    try {
      response = await fetch(form.dataset.checkUrl, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-CSRF-Token": csrfToken(form) },
        credentials: "same-origin",
      });
    } finally {
      busy = false;
      if (again) {
        again = false;
        check();
      }
    }
    if (mine !== sent || !response.ok) return;  // a newer check is on its way
    const result = await response.json();
    const open = [...preview.querySelectorAll("details.studio-variant")].map((d) => d.open);
    summary.innerHTML = result.summary;
    preview.innerHTML = result.preview;
    preview.querySelectorAll("details.studio-variant").forEach((d, i) => {
      if (i < open.length) d.open = open[i];
    });
    showWidths();
    showFieldErrors(form, result.errors);
    preview.setAttribute("aria-busy", "false");
    document.body.dataset.checked = String(mine);
  };
  const later = () => {
    if (busy) {
      again = true;
    } else {
      check();
    }
  };
  form.addEventListener("input", later);
  form.addEventListener("change", later);
}

function enhanceProgress(box) {
  const bar = document.getElementById("progress-bar");
  const text = document.getElementById("progress-text");
  const counts = document.getElementById("progress-counts");
  const heading = document.getElementById("progress-heading");
  const cap = document.getElementById("daily-cap");
  const poll = async () => {
    const response = await fetch(box.dataset.url, { credentials: "same-origin" });
    if (!response.ok) return;
    const state = await response.json();
    bar.max = state.total || 1;
    bar.value = state.done;
    let line = `${state.done} of ${state.total} done`;
    if (state.rate_per_second) line += `, ${state.rate_per_second} a second`;
    if (state.running && state.seconds_left !== null) line += `, about ${state.seconds_left} seconds left`;
    text.textContent = line + ".";
    cap.textContent = state.daily_cap;
    cap.hidden = !state.daily_cap;
    counts.replaceChildren(...Object.entries(state.counts).map(([name, n]) => {
      const item = document.createElement("li");
      item.textContent = `${name}: ${n}`;
      return item;
    }));
    if (state.running) {
      setTimeout(poll, 500);
    } else {
      heading.textContent = state.stopped ? "Stopped" : state.complete ? "Sent" : "Not sending now";
      const stop = document.getElementById("stop-form");
      if (stop) stop.remove();
    }
  };
  if (box.dataset.running === "true") setTimeout(poll, 300);
}

const editor = document.getElementById("issue-form");
if (editor) enhanceEditor(editor);
const progressBox = document.getElementById("progress");
if (progressBox) enhanceProgress(progressBox);
