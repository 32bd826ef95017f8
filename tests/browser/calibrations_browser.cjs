// Drives the ComfyUI page in headless Chromium (playwright-core) for tests/test_browser.py.
//
//   node calibrations_browser.cjs <server url> <out dir> <graphs.json>
//
// graphs.json: {"calibrate": API graph, "sample": API graph (NoiseShift on the
// calibrated label), "apply": API graph (Apply on it), "missing": API graph
// (NoiseShift on a label with no calibration, pass through), "missing_error": the
// same with if_missing error, "label": the calibrated label, "vue": whether the page
// runs with the Vue node renderer ("Nodes 2.0")}. Writes <out dir>/result.json
// (every step's outcome and what it saw) and PNG screenshots beside it. Exits 0 when
// the script ran to the end, whatever the checks found: the Python test asserts on
// result.json.
//
// Frontend-aware: 1.27 (PrimeVue) renders a toast as .p-toast-message, 1.5x as
// [data-testid="toast"]; the classic canvas draws nodes, the Vue renderer makes them
// elements ([data-node-id]). The pack's node panel is a DOM widget in both.

const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const [url, outDir, graphsFile] = process.argv.slice(2);
const graphs = JSON.parse(fs.readFileSync(graphsFile, "utf8"));
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const RUN_TIMEOUT_MS = Number(process.env.BROWSER_RUN_TIMEOUT_MS || 600000);
const result = { steps: {}, screenshots: [], console: [], pageErrors: [] };

function save() {
  fs.writeFileSync(path.join(outDir, "result.json"), JSON.stringify(result, null, 1));
}

const TOAST = '.p-toast-message, [data-testid="toast"], .noise-calibration-toast';
const PANEL = ".noise-calibration-node-status";

async function shot(page, name, description, clip) {
  const file = path.join(outDir, `${name}.png`);
  await page.screenshot({ path: file, clip });
  result.screenshots.push({ file: `${name}.png`, description });
}

// Scale 1 and the node near the top left of the canvas; its box on the page with
// its title (both renderers follow the canvas transform).
async function showNode(page, id) {
  await page.evaluate((id) => {
    const app = window.comfyAPI.app.app;
    const node = app.graph.getNodeById(id);
    const ds = app.canvas.ds;
    const canvas = app.canvas.canvas.getBoundingClientRect();
    // centred across the canvas, clear of a sidebar on the left and the minimap
    const left = Math.round(canvas.width / 2 - node.size[0] / 2);
    ds.scale = 1;
    ds.offset[0] = -node.pos[0] + left;
    ds.offset[1] = -node.pos[1] + 110;
    app.canvas.setDirty(true, true);
    return left;
  }, id);
  await page.waitForTimeout(800);
  return await page.evaluate((id) => {
    const app = window.comfyAPI.app.app;
    const node = app.graph.getNodeById(id);
    const canvas = app.canvas.canvas.getBoundingClientRect();
    const ds = app.canvas.ds;
    const vue = document.querySelector(`[data-node-id="${id}"]`);
    if (vue) {
      const r = vue.getBoundingClientRect();
      return { x: r.x, y: r.y, width: r.width, height: r.height };
    }
    const title = window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
    return {
      x: canvas.x + node.pos[0] + ds.offset[0],
      y: canvas.y + node.pos[1] + ds.offset[1] - title,
      width: node.size[0],
      height: node.size[1] + title,
    };
  }, id);
}

function around(box, viewport, pad = 16) {
  const x = Math.max(0, box.x - pad);
  const y = Math.max(0, box.y - pad);
  return {
    x,
    y,
    width: Math.min(viewport.width - x, box.width + 2 * pad),
    height: Math.min(viewport.height - y, box.height + 2 * pad),
  };
}

// The node's panel as the page shows it: its text, whether it is visible, its box.
async function panelOf(page, id) {
  return await page.evaluate(
    ({ id, selector }) => {
      const node = window.comfyAPI.app.app.graph.getNodeById(id);
      const widget = node?.widgets?.find((w) => w.name === "noise_calibration_status");
      const element = widget?.element;
      const box = element?.getBoundingClientRect();
      return {
        widget: Boolean(widget),
        serialize: widget?.serialize ?? null,
        inDocument: Boolean(element?.isConnected),
        visible: Boolean(box && box.width > 0 && box.height > 0 && element.checkVisibility?.()),
        text: element?.innerText ?? null,
        matches: element?.matches?.(selector) ?? false,
        box: box ? [box.width, box.height] : null,
        widgetsValues: node?.serialize?.()?.widgets_values ?? null,
        widgetNames: (node?.widgets ?? []).map((w) => w.name),
      };
    },
    { id, selector: PANEL },
  );
}

async function step(name, fn) {
  const started = Date.now();
  try {
    result.steps[name] = { ok: true, ...(await fn()), seconds: (Date.now() - started) / 1000 };
  } catch (error) {
    result.steps[name] = { ok: false, error: String(error?.stack || error) };
  }
  save();
  return result.steps[name];
}

// Load an API graph into the canvas and queue it from the page (so the page's client
// gets the executed events and the pack's messages); resolves with how it ended.
async function runGraph(page, graph, timeoutMs = RUN_TIMEOUT_MS) {
  return await page.evaluate(
    async ({ graph, timeoutMs }) => {
      const app = window.comfyAPI.app.app;
      const api = window.comfyAPI.api.api;
      app.loadApiJson(graph, "browser-test.json");
      const ended = new Promise((resolve) => {
        const off = [];
        const finish = (kind) => (event) => {
          for (const [name, fn] of off) api.removeEventListener(name, fn);
          resolve({ kind, detail: event.detail ?? null });
        };
        for (const name of ["execution_success", "execution_error", "execution_interrupted"]) {
          const fn = finish(name);
          off.push([name, fn]);
          api.addEventListener(name, fn);
        }
      });
      const timeout = new Promise((resolve) =>
        setTimeout(() => resolve({ kind: "timeout", detail: null }), timeoutMs),
      );
      await app.queuePrompt(0);
      return await Promise.race([ended, timeout]);
    },
    { graph, timeoutMs },
  );
}

async function toastTexts(page) {
  return await page.$$eval(TOAST, (nodes) =>
    nodes.map((n) => n.innerText.replace(/\s+/g, " ").trim()),
  );
}

async function nodeTitle(page, id) {
  return await page.evaluate((id) => window.comfyAPI.app.app.graph.getNodeById(id)?.title, id);
}

function findNode(graph, type) {
  return Object.keys(graph).find((id) => graph[id].class_type === type);
}

(async () => {
  fs.mkdirSync(outDir, { recursive: true });
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    // tall enough for the whole Calibrate node (its widgets, summary and plot) at scale 1
    const page = await browser.newPage({ viewport: { width: 1500, height: 1300 } });
    page.on("console", (m) => result.console.push(`${m.type()}: ${m.text()}`.slice(0, 500)));
    page.on("pageerror", (e) => result.pageErrors.push(String(e?.stack || e).slice(0, 1500)));
    page.on("response", (r) => {
      if (r.status() >= 400) result.console.push(`HTTP ${r.status()} ${r.url()}`);
    });

    const loaded = await step("load", async () => {
      await page.goto(url, { waitUntil: "domcontentloaded" });
      await page.waitForFunction(
        () =>
          window.comfyAPI?.app?.app?.graph &&
          window.comfyAPI.app.app.extensions?.some((e) => e.name === "noise-calibration.web"),
        null,
        { timeout: 120000 },
      );
      await page.waitForSelector(".side-bar-button", { timeout: 60000 });
      await page.keyboard.press("Escape"); // a first-run dialog, if any
      return {
        frontend: await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null),
        sidebarTab: await page.evaluate(() =>
          Boolean(window.comfyAPI.app.app.extensionManager?.registerSidebarTab),
        ),
        // the extension's state is on its extension object, nothing on window
        extensionExposes: await page.evaluate(() =>
          Object.keys(
            window.comfyAPI.app.app.extensions.find((e) => e.name === "noise-calibration.web"),
          ),
        ),
        onWindow: await page.evaluate(() =>
          Object.keys(window).filter((key) => /noise.?calibration/i.test(key)),
        ),
        vueNodes: await page.evaluate(
          () =>
            window.comfyAPI.app.app.ui?.settings?.getSettingValue?.("Comfy.VueNodes.Enabled") ??
            null,
        ),
      };
    });
    if (!loaded.ok) return;
    const viewport = page.viewportSize();

    // A shipped workflow keeps its saved widget values: the panel is display only,
    // before and after it shows something (an output given to the node's onExecuted).
    await step("saved_workflow", async () => {
      return await page.evaluate(async (workflow) => {
        const app = window.comfyAPI.app.app;
        await app.loadGraphData(structuredClone(workflow), true, true, "example.json");
        const values = () =>
          Object.fromEntries(
            app.graph.serialize().nodes.map((n) => [String(n.id), n.widgets_values ?? null]),
          );
        const loaded = values();
        const shown = [];
        for (const node of app.graph.nodes) {
          const sizes = [{ image: [128, 128], latent: [16, 16], recommendation: "noiseshift@1" }];
          const output = node.type === "NoiseCalibrationCalibrate"
            ? { text: ["wrote x.json\nthis run: 1 network evaluations, 1.0 s"] }
            : { noise_calibration: [{ sizes }], text: [] };
          if (!node.widgets?.some((w) => w.name === "noise_calibration_status")) continue;
          node.onExecuted?.(output);
          shown.push(String(node.id));
        }
        await new Promise((resolve) => setTimeout(resolve, 300));
        return { loaded, afterShown: values(), shown };
      }, graphs.example);
    });

    await step("calibrate", async () => {
      const run = await runGraph(page, graphs.calibrate);
      if (run.kind !== "execution_success") throw new Error(`calibrate: ${JSON.stringify(run)}`);
      const id = findNode(graphs.calibrate, "NoiseCalibrationCalibrate");
      await page.waitForTimeout(1500); // the preview image loads
      const box = await showNode(page, id);
      const panel = await panelOf(page, id);
      const vueNode = await page.locator(`[data-node-id="${id}"]`).count();
      // the plot as the node shows it: an <img> in a Vue node, node.imgs on the canvas
      // the plot in the node's panel, loaded, at the width it is drawn
      await page
        .waitForFunction(
          (id) => {
            const node = window.comfyAPI.app.app.graph.getNodeById(id);
            const panel = node.widgets?.find((w) => w.name === "noise_calibration_status");
            const img = panel?.element?.querySelector("img.noise-calibration-node-plot");
            return img?.complete && img.naturalWidth > 0;
          },
          id,
          { timeout: 30000 },
        )
        .catch(() => null);
      const plot = await page.evaluate((id) => {
        const node = window.comfyAPI.app.app.graph.getNodeById(id);
        const panel = node.widgets?.find((w) => w.name === "noise_calibration_status");
        const img = panel?.element?.querySelector("img.noise-calibration-node-plot");
        if (!img?.naturalWidth) return { natural: null };
        const box = img.getBoundingClientRect();
        const panelBox = panel.element.getBoundingClientRect();
        return {
          natural: [img.naturalWidth, img.naturalHeight],
          drawnWidth: Math.round(box.width),
          // the whole plot inside the panel's visible box (not cut off by its height)
          inside: box.bottom <= panelBox.bottom + 1 && box.top >= panelBox.top - 1,
          // other images on the node (a frontend preview would be a second copy)
          otherImages:
            document.querySelectorAll(`[data-node-id="${id}"] img`).length -
            (document.querySelector(`[data-node-id="${id}"]`) ? 1 : 0) +
            (node.imgs?.length ?? 0),
        };
      }, id);
      await shot(page, "1-calibrate-node", "the Calibrate node after a run: summary and plot", around(box, viewport));
      return { run: run.kind, panel, vueNode, plot, box };
    });

    await step("tab_lists_calibration", async () => {
      const button = page.locator('.side-bar-button[aria-label="Noise calibrations"]');
      await button.first().click();
      const item = page.locator(".noise-calibration-item", { hasText: graphs.label });
      await item.first().waitFor({ timeout: 30000 });
      const texts = await page.$$eval(".noise-calibration-item", (n) => n.map((x) => x.innerText));
      const filters = await page.$$eval(".noise-calibration-filter option", (n) =>
        n.map((x) => x.textContent),
      );
      await shot(page, "2-tab-list", "the Noise calibrations tab listing the new calibration");
      return { items: texts, filters };
    });

    await step("filter", async () => {
      const select = page.locator(".noise-calibration-filter");
      const options = await select.locator("option").evaluateAll((n) =>
        n.map((x) => ({ value: x.value, text: x.textContent })),
      );
      const mine = options.find((o) => o.text.includes(graphs.label));
      if (!mine) throw new Error(`no filter option for ${graphs.label}: ${JSON.stringify(options)}`);
      await select.selectOption(mine.value);
      const shown = await page.$$eval(".noise-calibration-item", (n) => n.map((x) => x.innerText));
      return { options, shown };
    });

    await step("plot", async () => {
      const item = page.locator(".noise-calibration-item", { hasText: graphs.label }).first();
      await item.locator(".noise-calibration-title").click();
      const img = page.locator("img.noise-calibration-plot");
      await img.waitFor({ timeout: 30000 });
      await page.waitForFunction(
        () => {
          const i = document.querySelector("img.noise-calibration-plot");
          return i && i.complete && i.naturalWidth > 0;
        },
        null,
        { timeout: 60000 },
      );
      const size = await img.evaluate((i) => [i.naturalWidth, i.naturalHeight]);
      const shown = await img.evaluate((i) => [i.clientWidth, i.clientHeight]);
      const tab = await page.locator(".noise-calibration-browser").boundingBox();
      await shot(page, "3-tab-plot", "a calibration opened in the tab: its plot", around(tab, viewport, 4));
      return { size, shown };
    });

    await step("node_status", async () => {
      const run = await runGraph(page, graphs.sample);
      const id = findNode(graphs.sample, "NoiseCalibrationNoiseShift");
      const lines = await page.evaluate(
        (id) => window.comfyAPI.app.app.graph.getNodeById(id)?.noiseCalibrationStatus ?? null,
        id,
      );
      const box = await showNode(page, id);
      const panel = await panelOf(page, id);
      await shot(page, "5-noiseshift-status", "NoiseShift after a run: the calibrated size", around(box, viewport));
      return { run: run.kind, lines, panel };
    });

    await step("apply_status", async () => {
      const run = await runGraph(page, graphs.apply);
      const id = findNode(graphs.apply, "NoiseCalibrationApply");
      const box = await showNode(page, id);
      const panel = await panelOf(page, id);
      await shot(page, "4-apply-status", "Apply after a run: the size and what Apply uses", around(box, viewport));
      return { run: run.kind, panel };
    });

    await step("missing_toast", async () => {
      const run = await runGraph(page, graphs.missing);
      const id = findNode(graphs.missing, "NoiseCalibrationNoiseShift");
      const title = await nodeTitle(page, id);
      await page
        .locator(TOAST, { hasText: "passes through" })
        .first()
        .waitFor({ timeout: 30000 });
      const toasts = await toastTexts(page);
      await shot(page, "6-missing-toast", "the toast naming the NoiseShift node that passed through");
      return { run: run.kind, node: id, title, toasts };
    });

    await step("missing_error_toast", async () => {
      const run = await runGraph(page, graphs.missing_error);
      const id = findNode(graphs.missing_error, "NoiseCalibrationNoiseShift");
      const title = await nodeTitle(page, id);
      await page
        .locator(TOAST, { hasText: "at any resolution" })
        .first()
        .waitFor({ timeout: 30000 });
      const toasts = await toastTexts(page);
      await page.keyboard.press("Escape"); // the frontend's own error dialog
      await page.waitForTimeout(300);
      await shot(page, "7-missing-error", "a missing calibration with if_missing error: the toast naming the node");
      return { run: run.kind, node: id, title, toasts };
    });

    await step("shared_page", async () => {
      // after the toasts: nothing of the extension's is a child of <body>
      const bodyChildren = await page.evaluate(() =>
        [...document.body.children]
          .filter((e) => /noise-calibration/.test(`${e.id} ${e.className}`))
          .map((e) => e.outerHTML.slice(0, 200)),
      );
      const onWindow = await page.evaluate(() =>
        Object.keys(window).filter((key) => /noise.?calibration/i.test(key)),
      );
      return { bodyChildren, onWindow };
    });

    await step("delete", async () => {
      const button = page.locator('.side-bar-button[aria-label="Noise calibrations"]');
      if (!(await page.locator(".noise-calibration-browser").count())) await button.first().click();
      const item = page.locator(".noise-calibration-item", { hasText: graphs.label }).first();
      await item.waitFor({ timeout: 30000 });
      const file = await item.getAttribute("data-file");
      await item.locator(".noise-calibration-delete").click();
      const confirm = item.locator(".noise-calibration-confirm-delete");
      await confirm.waitFor({ timeout: 10000 });
      const question = await item.innerText();
      await shot(page, "8-delete-confirm", "the delete confirmation in the tab");
      const stillThere = await page.locator(`.noise-calibration-item[data-file="${file}"]`).count();
      await confirm.click();
      await page
        .locator(`.noise-calibration-item[data-file="${file}"]`)
        .waitFor({ state: "detached", timeout: 30000 });
      const status = await page.locator(".noise-calibration-status").innerText();
      await shot(page, "9-deleted", "the tab after the delete");
      return { file, question, stillThereBeforeConfirm: stillThere, status };
    });
  } finally {
    save();
    await browser.close();
  }
})().catch((error) => {
  result.fatal = String(error?.stack || error);
  save();
  process.exit(1);
});
