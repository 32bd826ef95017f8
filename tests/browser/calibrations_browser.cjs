// Drives the ComfyUI page in headless Chromium (playwright-core) for tests/test_browser.py.
//
//   node calibrations_browser.cjs <server url> <out dir> <graphs.json>
//
// graphs.json: {"calibrate": API graph, "sample": API graph (NoiseShift on the
// calibrated label), "missing": API graph (NoiseShift on a label with no calibration,
// pass through), "missing_error": the same with if_missing error, "label": the
// calibrated label}. Writes <out dir>/result.json (every step's outcome and what
// it saw) and PNG screenshots beside it. Exits 0 when the script ran to the end,
// whatever the checks found: the Python test asserts on result.json.

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

async function shot(page, name, description) {
  const file = path.join(outDir, `${name}.png`);
  await page.screenshot({ path: file });
  result.screenshots.push({ file: `${name}.png`, description });
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
  return await page.$$eval(".p-toast-message, .noise-calibration-toast", (nodes) =>
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
    const page = await browser.newPage({ viewport: { width: 1500, height: 950 } });
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
      };
    });
    if (!loaded.ok) return;

    await step("calibrate", async () => {
      const run = await runGraph(page, graphs.calibrate);
      if (run.kind !== "execution_success") throw new Error(`calibrate: ${JSON.stringify(run)}`);
      return { run: run.kind };
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
      await shot(page, "1-tab-list", "the Noise calibrations tab listing the new calibration");
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
      await shot(page, "2-plot", "a calibration opened in the tab: its sigma_hat and error plot");
      return { size };
    });

    await step("node_status", async () => {
      const run = await runGraph(page, graphs.sample);
      const id = findNode(graphs.sample, "NoiseCalibrationNoiseShift");
      const lines = await page.evaluate(
        (id) => window.comfyAPI.app.app.graph.getNodeById(id)?.noiseCalibrationStatus ?? null,
        id,
      );
      await page.evaluate((id) => {
        const app = window.comfyAPI.app.app;
        const node = app.graph.getNodeById(id);
        app.canvas.selectNode?.(node);
        app.canvas.centerOnNode?.(node);
        app.canvas.setDirty?.(true, true);
      }, id);
      await page.waitForTimeout(300);
      await shot(page, "3-node-sizes", "the NoiseShift node showing the calibrated size after a run");
      return { run: run.kind, lines };
    });

    await step("missing_toast", async () => {
      const run = await runGraph(page, graphs.missing);
      const id = findNode(graphs.missing, "NoiseCalibrationNoiseShift");
      const title = await nodeTitle(page, id);
      await page
        .locator(".p-toast-message, .noise-calibration-toast", { hasText: "passes through" })
        .first()
        .waitFor({ timeout: 30000 });
      const toasts = await toastTexts(page);
      await shot(page, "4-missing-toast", "the toast naming the NoiseShift node that passed through");
      return { run: run.kind, node: id, title, toasts };
    });

    await step("missing_error_toast", async () => {
      const run = await runGraph(page, graphs.missing_error);
      const id = findNode(graphs.missing_error, "NoiseCalibrationNoiseShift");
      const title = await nodeTitle(page, id);
      await page
        .locator(".p-toast-message, .noise-calibration-toast", { hasText: "at any resolution" })
        .first()
        .waitFor({ timeout: 30000 });
      const toasts = await toastTexts(page);
      await page.keyboard.press("Escape"); // the frontend's own error dialog
      await page.waitForTimeout(300);
      await shot(page, "5-missing-error-toast", "the error toast naming the NoiseShift node");
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
      await shot(page, "6-delete-confirm", "the delete confirmation in the tab");
      const stillThere = await page.locator(`.noise-calibration-item[data-file="${file}"]`).count();
      await confirm.click();
      await page
        .locator(`.noise-calibration-item[data-file="${file}"]`)
        .waitFor({ state: "detached", timeout: 30000 });
      const status = await page.locator(".noise-calibration-status").innerText();
      await shot(page, "7-deleted", "the tab after the delete");
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
