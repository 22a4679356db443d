// Plays a live Mediaplane Stream input in headless Chromium (playwright-core, Debian chromium):
//  1. hls.js (npm) plays the live HLS playlist: reports currentTime progress, decoded frames and
//     every hls.js error;
//  2. a WHEP viewer (RTCPeerConnection, recvonly audio+video) POSTs its offer to the play URL and
//     reports getStats() inbound-rtp counters (framesDecoded is the proof frames were decoded),
//     then DELETEs its session.
// Env: ORIGIN (server origin; the test page is served under it so requests are same-origin),
// PLAYLIST_URL, WHEP_URL, HLS_JS (path to hls.js's dist/hls.min.js), USER_DATA_DIR, CHROMIUM.
// Prints one JSON line: {error, hls:{...}, whep:{...}}.
const { launchChromium } = require("../../../tests/browser/launch.cjs");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const browser = await launchChromium({ webrtc: true, autoplay: true });
  const result = { error: null, console: [] };
  try {
    const page = await browser.newPage();
    page.on("console", (m) => result.console.push(m.text()));
    const pageUrl = `${process.env.ORIGIN}/__stream_test_page`;
    await page.route(pageUrl, (route) =>
      route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><title>play</title><body></body>" }));
    await page.goto(pageUrl, { waitUntil: "load" });
    await page.addScriptTag({ path: process.env.HLS_JS });

    result.hls = await page.evaluate(async (playlist) => {
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      const out = { supported: Hls.isSupported(), errors: [] };
      const video = document.createElement("video");
      video.muted = true;
      document.body.append(video);
      const hls = new Hls();
      hls.on(Hls.Events.ERROR, (_, d) => out.errors.push({ type: d.type, details: d.details, fatal: d.fatal }));
      const parsed = new Promise((r) => hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => r(d)));
      hls.loadSource(playlist);
      hls.attachMedia(video);
      const manifest = await Promise.race([parsed, sleep(15000).then(() => null)]);
      out.manifestParsed = !!manifest;
      out.levelCodecs = manifest ? manifest.levels.map((l) => [l.videoCodec, l.audioCodec]) : [];
      try { await video.play(); } catch (e) { out.playError = String(e); }
      const started = performance.now();
      while (performance.now() - started < 25000) {
        if (out.firstTime === undefined && video.currentTime > 0) out.firstTime = video.currentTime;
        if (out.firstTime !== undefined && video.currentTime - out.firstTime >= 3) break;
        if (out.errors.some((e) => e.fatal)) break;
        await sleep(100);
      }
      const q = video.getVideoPlaybackQuality();
      out.currentTime = video.currentTime;
      out.decodedFrames = q.totalVideoFrames;
      out.droppedFrames = q.droppedVideoFrames;
      out.width = video.videoWidth;
      out.height = video.videoHeight;
      out.live = !!(hls.levels[0] && hls.levels[0].details && hls.levels[0].details.live);
      hls.destroy();
      return out;
    }, process.env.PLAYLIST_URL);

    result.whep = await page.evaluate(async (whep) => {
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      const out = {};
      const pc = new RTCPeerConnection({ iceServers: [] });
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.addTransceiver("audio", { direction: "recvonly" });
      await pc.setLocalDescription(await pc.createOffer());
      // Non-trickle: send the offer with the host candidates gathered (bounded wait).
      await Promise.race([
        new Promise((r) => {
          if (pc.iceGatheringState === "complete") r();
          pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && r());
        }),
        sleep(3000),
      ]);
      const response = await fetch(whep, {
        method: "POST", headers: { "content-type": "application/sdp" }, body: pc.localDescription.sdp,
      });
      out.status = response.status;
      out.location = response.headers.get("location");
      const answer = await response.text();
      if (response.status !== 201) { out.body = answer; return out; }
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      const started = performance.now();
      while (performance.now() - started < 20000) {
        const stats = await pc.getStats();
        out.video = null; out.audio = null;
        stats.forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "video") {
            const codec = s.codecId && stats.get(s.codecId);
            out.video = { framesDecoded: s.framesDecoded, packetsReceived: s.packetsReceived, packetsLost: s.packetsLost,
              frameWidth: s.frameWidth, frameHeight: s.frameHeight, codec: codec && codec.mimeType };
          }
          if (s.type === "inbound-rtp" && s.kind === "audio") {
            out.audio = { packetsReceived: s.packetsReceived, totalSamplesReceived: s.totalSamplesReceived };
          }
        });
        if (out.video && out.video.framesDecoded >= 60 && out.audio && out.audio.packetsReceived > 50) break;
        await sleep(200);
      }
      out.connectionState = pc.connectionState;
      const del = await fetch(new URL(out.location, whep), { method: "DELETE" });
      out.deleteStatus = del.status;
      pc.close();
      return out;
    }, process.env.WHEP_URL);
  } catch (e) {
    result.error = String((e && e.stack) || e);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
})();
