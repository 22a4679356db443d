// One headless Chromium page (playwright-core, Debian chromium) driven by a Rust test over stdio:
// each stdin line is a JSON command, each answer one JSON line on stdout ({ok, ...} or {error}).
// Commands:
//   {cmd:"publish", url, codecs:"h264"|"vp8"|"default"}: WHIP publisher of the fake camera + fake
//     microphone (sendonly transceivers; "h264"/"vp8" narrow the video codecs with
//     setCodecPreferences, "default" sends Chromium's own offer). Answers with the HTTP status and,
//     on 201, once the connection is up and frames are encoded, the sender's stats.
//   {cmd:"stats"}: the publisher's outbound-rtp stats (codec, frames and keyframes encoded, PLIs).
//   {cmd:"unpublish"}: DELETEs the WHIP session (the 201's Location) and closes the peer.
//   {cmd:"whep", url, frames}: a recvonly WHEP viewer until `frames` frames are decoded (bounded),
//     then its DELETE.
//   {cmd:"play_vod", url}: hls.js plays a VOD playlist to its end (bounded).
//   {cmd:"exit"}
// Env: ORIGIN (the test page is served under it so requests are same-origin), HLS_JS (path to
// hls.js's dist/hls.min.js, only for play_vod), USER_DATA_DIR, CHROMIUM.
const { launchChromium } = require("../../../tests/browser/launch.cjs");
const readline = require("readline");

const PAGE = () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // Non-trickle: the offer goes out with the host candidates gathered (bounded wait).
  const gathered = (pc) => Promise.race([
    new Promise((r) => {
      if (pc.iceGatheringState === "complete") r();
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && r());
    }),
    sleep(3000),
  ]);
  const codecsOf = (sdp, kind) => {
    const section = sdp.split(/\r\n(?=m=)/).find((s) => s.startsWith(`m=${kind}`)) || "";
    return section.split("\r\n").filter((l) => l.startsWith("a=rtpmap:")).map((l) => l.split(" ")[1].split("/")[0]);
  };

  window.publisherStats = async () => {
    const pc = window.publisher && window.publisher.pc;
    if (!pc) return null;
    const stats = await pc.getStats();
    const out = { connectionState: pc.connectionState, video: null, audio: null };
    stats.forEach((s) => {
      if (s.type !== "outbound-rtp") return;
      const codec = s.codecId && stats.get(s.codecId);
      if (s.kind === "video") {
        out.video = { codec: codec && codec.mimeType, sdpFmtpLine: codec && codec.sdpFmtpLine,
          encoderImplementation: s.encoderImplementation, framesEncoded: s.framesEncoded,
          keyFramesEncoded: s.keyFramesEncoded, pliCount: s.pliCount, firCount: s.firCount, nackCount: s.nackCount,
          frameWidth: s.frameWidth, frameHeight: s.frameHeight, qualityLimitationReason: s.qualityLimitationReason };
      } else {
        out.audio = { codec: codec && codec.mimeType, packetsSent: s.packetsSent };
      }
    });
    return out;
  };

  window.publish = async (url, codecs) => {
    const out = {};
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
    const pc = new RTCPeerConnection({ iceServers: [] });
    const video = pc.addTransceiver(media.getVideoTracks()[0], { direction: "sendonly" });
    pc.addTransceiver(media.getAudioTracks()[0], { direction: "sendonly" });
    const caps = RTCRtpSender.getCapabilities("video").codecs;
    out.senderVideoCodecs = caps.map((c) => [c.mimeType, c.sdpFmtpLine || ""].join(" ").trim());
    if (codecs !== "default") {
      const wanted = codecs === "h264"
        // Constrained baseline first: what OpenH264 encodes and what every HLS player decodes.
        ? caps.filter((c) => c.mimeType === "video/H264" && /packetization-mode=1/.test(c.sdpFmtpLine || ""))
          .sort((a, b) => /42e01f/.test(b.sdpFmtpLine) - /42e01f/.test(a.sdpFmtpLine))
        : caps.filter((c) => c.mimeType === "video/VP8");
      out.preferred = wanted.length;
      if (wanted.length) video.setCodecPreferences(wanted);
    }
    // A test needs a stable picture size; a loaded machine would otherwise scale it down.
    const params = video.sender.getParameters();
    params.degradationPreference = "maintain-resolution";
    await video.sender.setParameters(params);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    out.offerVideoCodecs = codecsOf(pc.localDescription.sdp, "video");
    const response = await fetch(url, {
      method: "POST", headers: { "content-type": "application/sdp" }, body: pc.localDescription.sdp,
    });
    out.status = response.status;
    out.location = response.headers.get("location");
    const body = await response.text();
    if (response.status !== 201) {
      out.body = body;
      pc.close();
      media.getTracks().forEach((t) => t.stop());
      return out;
    }
    out.answerVideoCodecs = codecsOf(body, "video");
    await pc.setRemoteDescription({ type: "answer", sdp: body });
    window.publisher = { pc, media, url, location: out.location };
    const started = performance.now();
    while (performance.now() - started < 20000) {
      out.stats = await window.publisherStats();
      if (pc.connectionState === "connected" && out.stats.video && out.stats.video.framesEncoded > 0
          && out.stats.audio && out.stats.audio.packetsSent > 0) break;
      await sleep(100);
    }
    return out;
  };

  window.unpublish = async () => {
    const p = window.publisher;
    if (!p) return { error: "not publishing" };
    const out = { stats: await window.publisherStats() };
    const response = await fetch(new URL(p.location, p.url), { method: "DELETE" });
    out.deleteStatus = response.status;
    p.pc.close();
    p.media.getTracks().forEach((t) => t.stop());
    window.publisher = null;
    return out;
  };

  window.whep = async (url, frames) => {
    const out = {};
    const pc = new RTCPeerConnection({ iceServers: [] });
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const response = await fetch(url, {
      method: "POST", headers: { "content-type": "application/sdp" }, body: pc.localDescription.sdp,
    });
    out.status = response.status;
    out.location = response.headers.get("location");
    const answer = await response.text();
    if (response.status !== 201) { out.body = answer; pc.close(); return out; }
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    const started = performance.now();
    while (performance.now() - started < 30000) {
      const stats = await pc.getStats();
      out.video = null; out.audio = null;
      stats.forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        const codec = s.codecId && stats.get(s.codecId);
        if (s.kind === "video") {
          out.video = { framesDecoded: s.framesDecoded, packetsReceived: s.packetsReceived, packetsLost: s.packetsLost,
            keyFramesDecoded: s.keyFramesDecoded, frameWidth: s.frameWidth, frameHeight: s.frameHeight,
            codec: codec && codec.mimeType };
        } else {
          out.audio = { packetsReceived: s.packetsReceived, codec: codec && codec.mimeType };
        }
      });
      if (out.video && out.video.framesDecoded >= frames && out.audio && out.audio.packetsReceived > 50) break;
      await sleep(200);
    }
    out.connectionState = pc.connectionState;
    const del = await fetch(new URL(out.location, url), { method: "DELETE" });
    out.deleteStatus = del.status;
    pc.close();
    return out;
  };

  window.playVod = async (playlist) => {
    const out = { supported: Hls.isSupported(), errors: [] };
    const video = document.createElement("video");
    video.muted = true;
    document.body.append(video);
    const hls = new Hls();
    hls.on(Hls.Events.ERROR, (_, d) => out.errors.push({ type: d.type, details: d.details, fatal: d.fatal }));
    const parsed = new Promise((r) => hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => r(d)));
    const ended = new Promise((r) => video.addEventListener("ended", () => r(true)));
    hls.loadSource(playlist);
    hls.attachMedia(video);
    const manifest = await Promise.race([parsed, sleep(15000).then(() => null)]);
    out.manifestParsed = !!manifest;
    if (!manifest) { hls.destroy(); return out; }
    out.levelCodecs = manifest.levels.map((l) => [l.videoCodec, l.audioCodec]);
    try { await video.play(); } catch (e) { out.playError = String(e); }
    const fatal = new Promise((r) => {
      const check = setInterval(() => out.errors.some((e) => e.fatal) && (clearInterval(check), r(false)), 100);
    });
    out.ended = await Promise.race([ended, fatal, sleep(60000).then(() => false)]);
    const details = hls.levels[0] && hls.levels[0].details;
    out.live = details ? details.live : null;
    out.playlistDuration = details ? details.totalduration : null;
    out.fragments = details ? details.fragments.length : null;
    out.duration = video.duration;
    out.currentTime = video.currentTime;
    const q = video.getVideoPlaybackQuality();
    out.decodedFrames = q.totalVideoFrames;
    out.droppedFrames = q.droppedVideoFrames;
    out.width = video.videoWidth;
    out.height = video.videoHeight;
    hls.destroy();
    return out;
  };
};

(async () => {
  const browser = await launchChromium({ webrtc: true, fakeMedia: true, autoplay: true });
  const page = await browser.newPage();
  const pageUrl = `${process.env.ORIGIN}/__stream_test_page`;
  await page.route(pageUrl, (route) =>
    route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><title>stream</title><body></body>" }));
  await page.goto(pageUrl, { waitUntil: "load" });
  await page.evaluate(PAGE);
  const reply = (value) => process.stdout.write(JSON.stringify(value) + "\n");
  reply({ ok: true, ready: true });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    let command;
    try {
      command = JSON.parse(line);
      if (command.cmd === "exit") break;
      let result;
      switch (command.cmd) {
        case "publish": result = await page.evaluate(([u, c]) => window.publish(u, c), [command.url, command.codecs]); break;
        case "stats": result = await page.evaluate(() => window.publisherStats()); break;
        case "unpublish": result = await page.evaluate(() => window.unpublish()); break;
        case "whep": result = await page.evaluate(([u, f]) => window.whep(u, f), [command.url, command.frames || 60]); break;
        case "play_vod":
          await page.addScriptTag({ path: process.env.HLS_JS });
          result = await page.evaluate((u) => window.playVod(u), command.url);
          break;
        default: result = { error: `unknown command ${command.cmd}` };
      }
      reply({ ok: true, ...result });
    } catch (e) {
      reply({ ok: false, error: String((e && e.stack) || e) });
    }
  }
  await browser.close();
})().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String((e && e.stack) || e) }) + "\n");
  process.exit(1);
});
