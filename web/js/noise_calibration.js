// Noise Calibration: the calibrations browser (a sidebar tab), the pack's warnings as
// toasts naming the node, and the calibrated sizes shown on NoiseShift, Noise Level
// Correction and Apply after a run. Plain JavaScript, no build step; every frontend
// API used is checked first, so a frontend without one loses that feature only.
// See docs/web-extension.md.

import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const EXTENSION = "noise-calibration.web";
const ROUTE = "/noise_calibration/calibrations";
const MESSAGE_EVENT = "noise_calibration.message"; // noisecal_host/user_messages.py
const UI_KEY = "noise_calibration"; // noisecal_host/node_status.py
const CALIBRATE = "NoiseCalibrationCalibrate";
const STATUS_NODES = {
  NoiseCalibrationNoiseShift: "sizes",
  NoiseCalibrationNoiseLevelCorrection: "tables",
  NoiseCalibrationApply: "recommendations",
};
const PACK_NAME = "Noise Calibration";
const PACK_ERROR = "noise_calibration"; // the pack's exception types start with it
const TOAST_LIFE_MS = 15000;
const PAGE_SIZE = 1000; // the route's largest page (noisecal_host/routes.py MAX_LIMIT)
const MAX_PAGES = 100; // more than the server ever lists
const SHOW_STEP = 100; // entries drawn at a time; "Show more" draws the next ones

// ------------------------------------------------------------------ small helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "className") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function apiURL(path) {
  if (typeof api.apiURL === "function") return api.apiURL(path);
  return (api.api_base ?? "") + "/api" + path;
}

async function fetchJSON(path, options) {
  const response = await api.fetchApi(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    throw new Error(body?.error ?? `HTTP ${response.status}`);
  }
  return body;
}

// Every page of the list. A server that does not page (no `total`) sends it all at
// once. When the list changes between pages (its `version`), it is read again.
async function fetchCalibrations() {
  let items = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const first = await fetchJSON(`${ROUTE}?offset=0&limit=${PAGE_SIZE}`, { cache: "no-store" });
    items = [...(first?.calibrations ?? [])];
    const total = first?.total;
    if (typeof total !== "number") return items;
    let changed = false;
    for (let page = 1; items.length < total && page < MAX_PAGES; page++) {
      const body = await fetchJSON(`${ROUTE}?offset=${items.length}&limit=${PAGE_SIZE}`, {
        cache: "no-store",
      });
      const more = body?.calibrations ?? [];
      if (body?.version !== first.version) {
        changed = true;
        break;
      }
      if (!more.length) break;
      items.push(...more);
    }
    if (!changed) break;
  }
  const seen = new Set();
  return items.filter((item) => !seen.has(item.id) && seen.add(item.id));
}

function nodeById(id) {
  if (id === null || id === undefined) return null;
  try {
    return app.graph?.getNodeById?.(id) ?? app.graph?.getNodeById?.(Number(id)) ?? null;
  } catch {
    return null;
  }
}

function nodeName(id, fallback) {
  const node = nodeById(id);
  const title = node?.title || node?.type || fallback || "Noise Calibration";
  return id !== null && id !== undefined ? `${title} (node ${id})` : title;
}

// A toast's title: the node's name, with the pack's name in front unless the node's
// title already starts with it ("Noise Calibration: Apply (node 4)", not twice).
function toastTitle(name) {
  return name.startsWith(PACK_NAME) ? name : `${PACK_NAME}: ${name}`;
}

// Text shown in the GUI: plain (no markdown backticks), no trailing newline.
function plainText(text) {
  return String(text ?? "").replace(/`/g, "").trim();
}

function formatBytes(size) {
  if (size < 1024) return `${size} B`;
  return `${(size / 1024).toFixed(1)} KB`;
}

function formatNumber(value, digits = 3) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "-";
  return Math.abs(value) >= 0.01 ? value.toFixed(digits) : value.toExponential(2);
}

// ------------------------------------------------------------------ toasts

const shownMessages = new Set();

// Frontends without `extensionManager.toast` (before 1.3): the legacy dialog
// (`app.ui.dialog`, the frontend's own element), else the console. Nothing is
// added to the page by the extension itself.
function fallbackToast(severity, summary, detail) {
  const dialog = app.ui?.dialog;
  if (dialog && typeof dialog.show === "function") {
    try {
      dialog.show(
        el(
          "div",
          { className: `noise-calibration-toast noise-calibration-toast-${severity}` },
          el("b", {}, summary),
          el("div", { style: { whiteSpace: "pre-wrap" } }, detail),
        ),
      );
      return;
    } catch (error) {
      console.warn(`[${EXTENSION}] dialog failed`, error);
    }
  }
  (severity === "error" ? console.error : console.warn)(`[${EXTENSION}] ${summary}: ${detail}`);
}

function toast(severity, summary, detail) {
  const store = app.extensionManager?.toast;
  if (store && typeof store.add === "function") {
    try {
      store.add({ severity, summary, detail, life: TOAST_LIFE_MS });
      return;
    } catch (error) {
      console.warn(`[${EXTENSION}] toast failed`, error);
    }
  }
  fallbackToast(severity, summary, detail);
}

function showMessage({ text, level, node, prompt_id: promptId, what }) {
  const key = `${promptId}|${node}|${text}`;
  if (shownMessages.has(key)) return; // once per run, however often it is sent
  shownMessages.add(key);
  if (shownMessages.size > 500) shownMessages.delete(shownMessages.values().next().value);
  const severity = level === "error" ? "error" : "warn";
  toast(severity, toastTitle(nodeName(node, what)), plainText(text));
}

function onExecutionError(detail) {
  const type = String(detail?.exception_type ?? "");
  if (!type.startsWith(PACK_ERROR)) return;
  const node = detail.node_id;
  showMessage({
    text: String(detail.exception_message ?? "").trim(),
    level: "error",
    node,
    prompt_id: detail.prompt_id,
    what: detail.node_type,
  });
}

// ------------------------------------------------------------------ the sidebar tab

class CalibrationsBrowser {
  constructor() {
    this.items = [];
    this.filter = "";
    this.selected = null;
    this.confirming = null;
    this.root = null;
    this.status = "";
    this.loading = null;
    this.showing = SHOW_STEP;
  }

  mount(container) {
    this.root = el("div", {
      className: "noise-calibration-browser",
      style: {
        display: "flex",
        flexDirection: "column",
        gap: "8px",
        padding: "8px",
        height: "100%",
        overflow: "auto",
        font: "13px sans-serif",
      },
    });
    container.replaceChildren(this.root);
    this.render();
    this.refresh();
  }

  unmount() {
    this.root = null;
  }

  async refresh() {
    if (this.loading) return this.loading;
    this.status = "loading...";
    this.render();
    this.loading = (async () => {
      try {
        this.items = await fetchCalibrations();
        this.status = "";
        if (this.selected && !this.items.some((i) => i.id === this.selected)) this.selected = null;
      } catch (error) {
        this.status = `could not list calibrations: ${error.message}`;
      } finally {
        this.loading = null;
        this.render();
      }
    })();
    return this.loading;
  }

  checkpoints() {
    const seen = new Map();
    for (const item of this.items) {
      const cp = item.checkpoint;
      if (cp && !seen.has(cp.identity)) seen.set(cp.identity, cp.name);
    }
    return [...seen.entries()];
  }

  async remove(item) {
    let outcome;
    try {
      await fetchJSON(`${ROUTE}/${item.id}`, { method: "DELETE" });
      outcome = `deleted ${item.file}`;
    } catch (error) {
      outcome = `could not delete ${item.file}: ${error.message}`;
    }
    this.confirming = null;
    if (this.selected === item.id) this.selected = null;
    this.loading = null;
    await this.refresh();
    if (!this.status) this.status = outcome; // a listing error, if any, stays
    this.render();
  }

  renderItem(item) {
    const open = this.selected === item.id;
    const cp = item.checkpoint;
    const res = item.resolution;
    const title = cp
      ? `${cp.name} · ${res.image_width}x${res.image_height} px`
      : `${item.file} (unreadable)`;
    const details = item.error
      ? [el("div", { className: "noise-calibration-error", style: { color: "#e88" } }, item.error)]
      : [
          el(
            "div",
            {},
            `latent ${res.latent_height}x${res.latent_width} · ${item.steps} steps · ` +
              `${item.methods.join(", ")}`,
          ),
          el(
            "div",
            { className: "noise-calibration-recommendation" },
            // what Apply uses (with its guidance) and that one's gain over plain
            `Apply uses: ${item.recommendation.name}` +
              (item.recommendation.gain !== undefined && item.recommendation.gain !== null
                ? ` (gain over plain ${formatNumber(item.recommendation.gain)}` +
                  (item.recommendation.gain_noise !== undefined &&
                  item.recommendation.gain_noise !== null
                    ? ` ± ${formatNumber(item.recommendation.gain_noise)})`
                    : ")")
                : ""),
          ),
          el(
            "div",
            {},
            `one-step error ${formatNumber(item.metrics.error_before)} → ` +
              `${formatNumber(item.metrics.error_after)}` +
              (item.metrics.ratio !== null ? ` (×${formatNumber(item.metrics.ratio, 2)})` : "") +
              ` · ${item.network_evaluations} evaluations`,
          ),
          el(
            "div",
            { style: { opacity: 0.7 } },
            `${item.created_at} · ${formatBytes(item.size)} · ${item.folder} folder` +
              (item.shadowed ? " · hidden by a file of the same name" : ""),
          ),
        ];
    const actions = el("div", {
      style: { display: "flex", flexWrap: "wrap", alignItems: "center", gap: "6px", marginTop: "4px" },
    });
    if (item.deletable) {
      if (this.confirming === item.id) {
        actions.append(
          el("span", { style: { flexBasis: "100%", overflowWrap: "anywhere" } }, `Delete ${item.file}?`),
          el(
            "button",
            {
              className: "noise-calibration-confirm-delete",
              onclick: (event) => {
                event.stopPropagation();
                this.remove(item);
              },
            },
            "Delete",
          ),
          el(
            "button",
            {
              className: "noise-calibration-cancel-delete",
              onclick: (event) => {
                event.stopPropagation();
                this.confirming = null;
                this.render();
              },
            },
            "Cancel",
          ),
        );
      } else {
        actions.append(
          el(
            "button",
            {
              className: "noise-calibration-delete",
              title: "Delete this calibration file",
              onclick: (event) => {
                event.stopPropagation();
                this.confirming = item.id;
                this.render();
              },
            },
            "Delete...",
          ),
        );
      }
    }
    const plot = open
      ? el("img", {
          className: "noise-calibration-plot",
          alt: `plot of ${item.file}`,
          src: apiURL(`${ROUTE}/${item.id}/plot.png`),
          style: { width: "100%", marginTop: "6px", background: "#fff", borderRadius: "4px" },
        })
      : null;
    return el(
      "div",
      {
        className: "noise-calibration-item" + (open ? " noise-calibration-item-open" : ""),
        "data-id": item.id,
        "data-file": item.file,
        style: {
          border: "1px solid var(--border-color, #444)",
          borderRadius: "6px",
          padding: "6px 8px",
          cursor: "pointer",
          background: open ? "var(--comfy-input-bg, #222)" : "transparent",
        },
        onclick: () => {
          this.selected = open ? null : item.id;
          this.confirming = null;
          this.render();
        },
      },
      el("div", { className: "noise-calibration-title", style: { fontWeight: "bold" } }, title),
      details,
      actions,
      plot,
    );
  }

  render() {
    if (!this.root) return;
    const select = el(
      "select",
      {
        className: "noise-calibration-filter",
        style: { flex: 1, minWidth: 0 },
        onchange: (event) => {
          this.filter = event.target.value;
          this.showing = SHOW_STEP;
          this.render();
        },
      },
      el("option", { value: "" }, "all checkpoints"),
      this.checkpoints().map(([identity, name]) => {
        const option = el("option", { value: identity }, name);
        if (identity === this.filter) option.selected = true;
        return option;
      }),
    );
    const shown = this.items.filter(
      (item) => !this.filter || item.checkpoint?.identity === this.filter,
    );
    const drawn = shown.slice(0, this.showing);
    const rest = shown.length - drawn.length;
    const list = shown.length
      ? [
          ...drawn.map((item) => this.renderItem(item)),
          rest > 0
            ? el(
                "button",
                {
                  className: "noise-calibration-more",
                  onclick: () => {
                    this.showing += SHOW_STEP;
                    this.render();
                  },
                },
                `Show more (${rest} more)`,
              )
            : null,
        ]
      : [
          el(
            "div",
            { className: "noise-calibration-empty", style: { opacity: 0.7 } },
            this.items.length
              ? "No calibration for this checkpoint."
              : "No calibrations yet: run 'Noise Calibration: Calibrate' on a model.",
          ),
        ];
    this.root.replaceChildren(
      el("h3", { style: { margin: "0" } }, "Noise calibrations"),
      el(
        "div",
        { style: { display: "flex", gap: "6px" } },
        select,
        el(
          "button",
          {
            className: "noise-calibration-refresh",
            onclick: () => {
              this.loading = null;
              this.refresh();
            },
          },
          "Refresh",
        ),
      ),
      el("div", { className: "noise-calibration-status", style: { opacity: 0.8 } }, this.status),
      el("div", { className: "noise-calibration-list", style: { display: "grid", gap: "6px" } }, list),
    );
  }
}

const browser = new CalibrationsBrowser();

function registerTab() {
  const manager = app.extensionManager;
  if (!manager || typeof manager.registerSidebarTab !== "function") {
    console.info(`[${EXTENSION}] this frontend has no sidebar tabs: the calibrations browser is off`);
    return false;
  }
  manager.registerSidebarTab({
    id: "noise-calibration",
    icon: "pi pi-chart-line",
    title: "Noise calibrations",
    tooltip: "Noise calibrations",
    type: "custom",
    render: (container) => browser.mount(container),
    destroy: () => browser.unmount(),
  });
  return true;
}

// ------------------------------------------------------------------ on the nodes

function statusLines(kind, output) {
  const status = output?.[UI_KEY]?.[0];
  const lines = [];
  if (status) {
    const sizes = status.sizes ?? [];
    if (!sizes.length) {
      lines.push(
        kind === "tables" ? "no correction table for this checkpoint" : "not calibrated for this checkpoint",
      );
    } else {
      lines.push(kind === "tables" ? "correction tables at:" : "calibrated at:");
      for (const size of sizes) {
        const [w, h] = size.image;
        let line = `  ${w}x${h} px (latent ${size.latent[0]}x${size.latent[1]})`;
        if (size.error) line += " unreadable";
        else if (kind === "recommendations") line += `: ${size.recommendation}`;
        lines.push(line);
      }
    }
  }
  const notes = (output?.text ?? []).join("\n").trim();
  if (notes && kind !== "recommendations") {
    lines.push(`⚠ ${notes.split("\n")[0].slice(0, 80)}${notes.length > 80 ? "…" : ""}`);
  }
  return lines;
}

const LINE_HEIGHT = 14;

function addNodeStatus(nodeType, kind) {
  const onExecuted = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (output) {
    const result = onExecuted?.apply(this, arguments);
    try {
      this.noiseCalibrationStatus = statusLines(kind, output);
      const base = this.computeSize?.()[1] ?? this.size[1];
      this.noiseCalibrationBase = base;
      const needed = base + this.noiseCalibrationStatus.length * LINE_HEIGHT + 6;
      if (this.size[1] < needed) this.setSize?.([this.size[0], needed]);
      this.setDirtyCanvas?.(true, false);
    } catch (error) {
      console.warn(`[${EXTENSION}] could not show the calibrated sizes`, error);
    }
    return result;
  };
  const onDrawForeground = nodeType.prototype.onDrawForeground;
  nodeType.prototype.onDrawForeground = function (ctx) {
    const result = onDrawForeground?.apply(this, arguments);
    const lines = this.noiseCalibrationStatus;
    if (!lines?.length || this.flags?.collapsed || !ctx) return result;
    ctx.save();
    ctx.font = "11px sans-serif";
    ctx.fillStyle = "#9bc";
    let y = (this.noiseCalibrationBase ?? this.size[1] - lines.length * LINE_HEIGHT) + 10;
    for (const line of lines) {
      ctx.fillText(line, 10, y, this.size[0] - 16);
      y += LINE_HEIGHT;
    }
    ctx.restore();
    return result;
  };
}

// ------------------------------------------------------------------ the extension

// State stays in this module. The extension object carries the browser and
// statusLines for tests and the browser console: `app.extensions.find((e) =>
// e.name === "noise-calibration.web")`; nothing is written onto window.
const extension = {
  name: EXTENSION,
  browser,
  statusLines,
  async setup() {
    registerTab();
    api.addEventListener(MESSAGE_EVENT, (event) => showMessage(event.detail ?? {}));
    api.addEventListener("execution_error", (event) => onExecutionError(event.detail));
    api.addEventListener("executed", (event) => {
      const id = event.detail?.display_node ?? event.detail?.node;
      const node = nodeById(id);
      const type = node?.comfyClass ?? node?.type;
      if (type === CALIBRATE || event.detail?.output?.[UI_KEY]) {
        browser.loading = null;
        if (browser.root) browser.refresh();
      }
    });
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const kind = STATUS_NODES[nodeData?.name];
    if (kind) addNodeStatus(nodeType, kind);
  },
};

app.registerExtension(extension);
