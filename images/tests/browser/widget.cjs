// Drives the upload widget demo page in headless Chromium (playwright-core, Debian chromium).
// Env: DEMO_URL (the demo page with ?key=...), JPEG_PATH (file to upload), USER_DATA_DIR.
// Prints one JSON line: {maxProgress, events, delivered:{width,height}, progressValue}.
const { launchChromium } = require("../../../tests/browser/launch.cjs");

(async () => {
  const browser = await launchChromium();
  let result = { error: null };
  try {
    const page = await browser.newPage();
    const consoleLines = [];
    page.on("console", (m) => consoleLines.push(m.text()));
    await page.goto(process.env.DEMO_URL, { waitUntil: "load" });
    await page.waitForFunction(() => !!customElements.get("mediaplane-uploader"));
    // Keyboard access: the drop zone is focusable and labelled.
    const zone = page.locator("mediaplane-uploader .zone");
    const label = await zone.getAttribute("aria-label");
    const role = await zone.getAttribute("role");
    // A wrong type is refused on the client with an upload-error event.
    await page.locator("mediaplane-uploader input[type=file]").setInputFiles({ name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("hello") });
    await page.waitForFunction(() => window.uploadEvents.some((e) => e.type === "upload-error"));
    // The real upload.
    await page.locator("mediaplane-uploader input[type=file]").setInputFiles(process.env.JPEG_PATH);
    await page.waitForFunction(() => window.uploadEvents.some((e) => e.type === "upload-success"), null, { timeout: 30000 });
    await page.waitForFunction(() => {
      const img = document.querySelector("img.delivered");
      return img && img.complete && img.naturalWidth > 0;
    }, null, { timeout: 30000 });
    const delivered = await page.evaluate(() => {
      const img = document.querySelector("img.delivered");
      return { width: img.naturalWidth, height: img.naturalHeight, src: img.src };
    });
    const progressValue = await page.locator("mediaplane-uploader li progress").last().evaluate((p) => p.value);
    const status = await page.locator("mediaplane-uploader li .status").last().textContent();
    result = {
      error: null,
      maxProgress: await page.evaluate(() => window.maxProgress),
      events: await page.evaluate(() => window.uploadEvents),
      delivered, progressValue, status, label, role, console: consoleLines,
    };
  } catch (e) {
    result.error = String(e && e.stack || e);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
})();
