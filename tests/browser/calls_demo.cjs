// Drives the Calls two-party demo page (/calls/demo) in headless Chromium (playwright-core,
// Debian chromium): page A publishes its fake camera + microphone through the sessions HTTP API,
// page B pulls both tracks; we sample B's getStats() inbound-rtp video until framesDecoded grows.
// Env: DEMO_URL (the demo page, ?app=<app id>), APP_SECRET (typed into the page's form, never put
// in a URL), USER_DATA_DIR, CHROMIUM.
// Prints one JSON line: {publisher, subscriber, samples:[{framesDecoded,...}], codec, logs}.
const { launchChromium } = require("./launch.cjs");

const deadline = (ms) => Date.now() + ms;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const browser = await launchChromium({ webrtc: true, fakeMedia: true, autoplay: true });
  let result = { error: null, console: [] };
  try {
    const open = async () => {
      const page = await browser.newPage();
      page.on("console", (m) => result.console.push(m.text()));
      page.on("pageerror", (e) => result.console.push(`pageerror: ${e.message}`));
      await page.goto(process.env.DEMO_URL, { waitUntil: "load" });
      await page.fill("#secret", process.env.APP_SECRET);
      return page;
    };
    const a = await open();
    const b = await open();

    // Publisher: the demo's own button, then its session id as the page shows it.
    await a.click("#publish");
    await a.waitForFunction(() => document.getElementById("mySession").textContent.trim() !== "—", null, { timeout: 20000 })
      .catch(async (e) => { throw new Error(`publish: ${e.message}; log: ${await a.textContent("#log")}`); });
    const publisher = (await a.textContent("#mySession")).trim();
    await a.waitForFunction(() => window.demo.publishPc.connectionState === "connected", null, { timeout: 20000 });

    // Subscriber: paste the id and pull, as a user would.
    await b.fill("#remoteSession", publisher);
    await b.click("#pull");
    await b.waitForFunction(() => window.demo.pullPc && window.demo.pullPc.connectionState === "connected", null, { timeout: 20000 })
      .catch(async (e) => { throw new Error(`pull: ${e.message}; log: ${await b.textContent("#log")}`); });
    const subscriber = await b.evaluate(() => window.demo.pullSessionId);

    // Sample inbound video until frames have been decoded on two samples that grow.
    const samples = [];
    const until = deadline(30000);
    while (Date.now() < until) {
      const s = await b.evaluate(async () => {
        const v = await window.demo.inboundVideo();
        return v && { framesDecoded: v.framesDecoded || 0, packetsReceived: v.packetsReceived || 0,
          packetsLost: v.packetsLost || 0, nackCount: v.nackCount || 0, frameWidth: v.frameWidth || 0,
          frameHeight: v.frameHeight || 0, codecId: v.codecId || null };
      });
      if (s) samples.push(s);
      const grown = samples.filter((x) => x.framesDecoded > 0);
      if (grown.length >= 3 && grown[grown.length - 1].framesDecoded > grown[0].framesDecoded) break;
      await sleep(500);
    }
    const codec = await b.evaluate(async () => {
      const report = await window.demo.pullPc.getStats();
      const v = await window.demo.inboundVideo();
      const c = v && v.codecId && report.get(v.codecId);
      return c ? c.mimeType : null;
    });
    const video = await b.evaluate(() => {
      const el = document.getElementById("remote");
      return { width: el.videoWidth, height: el.videoHeight, currentTime: el.currentTime };
    });
    result = { ...result, publisher, subscriber, samples, codec, video,
      logs: { a: await a.textContent("#log"), b: await b.textContent("#log") } };
  } catch (e) {
    result.error = String((e && e.stack) || e);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
})();
