// Noise Calibration: the calibrations browser (a sidebar tab), the pack's warnings as
// toasts naming the node, and a panel on the nodes after a run (a DOM widget, shown
// by the classic canvas and the Vue node renderer alike): the Calibrate node's
// summary and plot, the calibrated sizes on NoiseShift, Noise Level Correction and
// Apply. Plain JavaScript, no build step; every frontend API used is checked first,
// so a frontend without one loses that feature only. See docs/web-extension.md.

import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const EXTENSION = "noise-calibration.web";
const ROUTE = "/noise_calibration/calibrations";
const MESSAGE_EVENT = "noise_calibration.message"; // noisecal_host/user_messages.py
const UI_KEY = "noise_calibration"; // noisecal_host/calibrations.py
const PLOT_KEY = "noise_calibration_plot"; // the Calibrate node's plot, the same file
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
const PLOT_MIN_WIDTH = 160; // the route's bounds for ?width= (noisecal_host/routes.py PLOT_WIDTH)
const PLOT_MAX_WIDTH = 2000;

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
  if (value === 0) return "0";
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

function showMessage({ id, subject, text, level, node, prompt_id: promptId, what }) {
  // a warning by its stable id (noisecal_host/user_messages.py); an error by its text
  const key = id ? `${promptId}|${node}|${id}|${subject ?? ""}` : `${promptId}|${node}|${text}`;
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
    // drawn for the width it is shown at (its text stays readable in a narrow tab);
    // the link opens the full figure, as the Calibrate node shows it
    const plotURL = apiURL(`${ROUTE}/${item.id}/plot.png`);
    const plot = open
      ? el(
          "div",
          { style: { marginTop: "6px" } },
          el("img", {
            className: "noise-calibration-plot",
            alt: `plot of ${item.file}`,
            src: `${plotURL}?width=${this.plotWidth()}`,
            style: { width: "100%", background: "#fff", borderRadius: "4px" },
          }),
          el(
            "a",
            {
              className: "noise-calibration-plot-full",
              href: plotURL,
              target: "_blank",
              rel: "noopener",
              onclick: (event) => event.stopPropagation(),
              style: { color: "var(--p-primary-color, #8cf)" },
            },
            "open the full plot",
          ),
        )
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

  // the plot's width in pixels: the entry's inner width (the tab's width less its
  // padding and the entry's), within the route's bounds
  plotWidth() {
    const inner = (this.root?.clientWidth || 300) - 2 * 8 - 2 * 9;
    return Math.max(PLOT_MIN_WIDTH, Math.min(PLOT_MAX_WIDTH, Math.round(inner)));
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
        else if (kind === "recommendations") line += `: uses ${size.recommendation}`;
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

// A display-only DOM widget under the node's widgets: the classic canvas places it
// over the node, the Vue node renderer ("Nodes 2.0", which never calls
// onDrawForeground) mounts the same element inside the node. It is not saved
// (serialize false: widgets_values and the queued prompt stay as they were).
const PANEL = "noise_calibration_status"; // the widget's name and type
const PANEL_FONT_PX = 12;
const PANEL_LINE_PX = 16;
const PANEL_PAD_PX = 6;
const PANEL_MARGIN_PX = 10; // the frontend's DOM widget margin on each side
const PANEL_MAX_LINES = 14; // more scrolls inside the panel
const CHAR_PX = 7.3; // a 12 px monospace character, to estimate wrapped lines
const CALIBRATE_WIDTH = 760; // the summary's lines and the plot at about 0.8 of its size
const STATUS_WIDTH = 360;

function calibrateLines(output) {
  return plainText((output?.text ?? []).join("\n"))
    .split("\n")
    .filter((line) => line.trim());
}

function innerWidth(node) {
  return (node.size?.[0] ?? STATUS_WIDTH) - 2 * PANEL_MARGIN_PX - 2 * PANEL_PAD_PX;
}

function wrappedLines(lines, width) {
  const perLine = Math.max(20, Math.floor((width - 8) / CHAR_PX));
  return lines.reduce((sum, line) => sum + Math.max(1, Math.ceil(line.length / perLine)), 0);
}

// the plot's height at the panel's width (its aspect from the node's output)
function plotHeight(node) {
  const plot = node.noiseCalibrationPlot;
  if (!plot?.width || !plot?.height) return 0;
  return Math.round((innerWidth(node) * plot.height) / plot.width) + PANEL_PAD_PX;
}

function panelHeight(node) {
  const lines = node.noiseCalibrationStatus ?? [];
  if (!lines.length && !node.noiseCalibrationPlot) return 0;
  const shown = Math.min(PANEL_MAX_LINES, wrappedLines(lines, innerWidth(node)));
  return shown * PANEL_LINE_PX + plotHeight(node) + 2 * PANEL_PAD_PX + 4;
}

function addPanel(node) {
  if (typeof node.addDOMWidget !== "function") return null;
  const element = el("div", {
    className: "noise-calibration-node-status",
    style: {
      boxSizing: "border-box",
      padding: `${PANEL_PAD_PX}px`,
      font: `${PANEL_FONT_PX}px/${PANEL_LINE_PX}px ui-monospace, Menlo, Consolas, monospace`,
      color: "var(--input-text, #ddd)",
      background: "var(--comfy-input-bg, #222)",
      borderRadius: "4px",
      whiteSpace: "pre-wrap",
      overflowWrap: "anywhere",
      overflowY: "auto",
      userSelect: "text",
      display: "none",
    },
  });
  const widget = node.addDOMWidget(PANEL, PANEL, element, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => "",
    setValue: () => {},
    getMinHeight: () => panelHeight(node),
    getMaxHeight: () => panelHeight(node),
  });
  widget.serialize = false;
  return widget;
}

function plotElement(plot) {
  const query = new URLSearchParams({
    filename: plot.filename,
    subfolder: plot.subfolder ?? "",
    type: plot.type ?? "temp",
  });
  return el("img", {
    className: "noise-calibration-node-plot",
    alt: "calibration plot",
    src: apiURL(`/view?${query}`),
    style: {
      display: "block",
      width: "100%",
      marginTop: `${PANEL_PAD_PX}px`,
      background: "#fff",
      borderRadius: "3px",
    },
  });
}

function showPanel(node, lines, plot, minWidth) {
  node.noiseCalibrationStatus = lines;
  node.noiseCalibrationPlot = plot?.filename ? plot : null;
  const widget = node.widgets?.find((w) => w.name === PANEL);
  if (!widget?.element) return;
  const element = widget.element;
  element.replaceChildren(
    ...lines.map((line) =>
      el(
        "div",
        {
          className: "noise-calibration-node-status-line",
          style: line.startsWith("⚠") ? { color: "#e8b04a" } : {},
        },
        line,
      ),
    ),
    ...(node.noiseCalibrationPlot ? [plotElement(node.noiseCalibrationPlot)] : []),
  );
  const shown = lines.length || node.noiseCalibrationPlot;
  element.style.display = shown ? "block" : "none";
  const width = Math.max(node.size[0], shown ? minWidth : 0);
  if (width !== node.size[0]) node.setSize?.([width, node.size[1]]);
  element.style.height = `${panelHeight(node)}px`;
  // the height the widgets now need (the panel's included)
  const needed = node.computeSize?.([width, node.size[1]])?.[1] ?? node.size[1];
  if (node.size[1] < needed) node.setSize?.([width, needed]);
  node.setDirtyCanvas?.(true, true);
}

function addNodePanel(nodeType, linesOf, minWidth) {
  const onNodeCreated = nodeType.prototype.onNodeCreated;
  nodeType.prototype.onNodeCreated = function () {
    const result = onNodeCreated?.apply(this, arguments);
    try {
      addPanel(this);
    } catch (error) {
      console.warn(`[${EXTENSION}] could not add the status panel`, error);
    }
    return result;
  };
  const onExecuted = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (output) {
    const result = onExecuted?.apply(this, arguments);
    try {
      showPanel(this, linesOf(output), output?.[PLOT_KEY]?.[0], minWidth);
    } catch (error) {
      console.warn(`[${EXTENSION}] could not show the node's status`, error);
    }
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
  calibrateLines,
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
    const name = nodeData?.name;
    if (name === CALIBRATE) addNodePanel(nodeType, calibrateLines, CALIBRATE_WIDTH);
    const kind = STATUS_NODES[name];
    if (kind) addNodePanel(nodeType, (output) => statusLines(kind, output), STATUS_WIDTH);
  },
};

app.registerExtension(extension);
