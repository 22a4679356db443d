// Launches the headless Debian Chromium every browser test script drives (playwright-core; never a
// downloaded browser). Scripts require it by path relative to themselves, so it resolves wherever
// the test runs from; playwright-core resolves from here (this folder's node_modules, else
// NODE_PATH, which the Rust tests set to $MEDIAPLANE_TEST_NODE_MODULES or this folder's).
// Env: USER_DATA_DIR (a fresh profile directory), CHROMIUM (default /usr/bin/chromium).
const { chromium } = require("playwright-core");

// Flags every test wants: no sandbox (tests run as root in containers), nothing fetched behind
// the test's back, no QUIC so requests are plain HTTP/1.1 to the test server.
const BASE = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

/**
 * A persistent Chromium context. Options:
 * - `webrtc`: peer connections on loopback with plain host candidates (no mDNS names);
 * - `fakeMedia`: getUserMedia gets Chromium's fake camera and microphone without a prompt;
 * - `autoplay`: media plays without a user gesture.
 */
function launchChromium({ webrtc = false, fakeMedia = false, autoplay = false } = {}) {
  const args = [...BASE];
  if (autoplay) args.push("--autoplay-policy=no-user-gesture-required");
  if (fakeMedia) args.push("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream");
  if (webrtc) args.push("--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns");
  return chromium.launchPersistentContext(process.env.USER_DATA_DIR, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args,
  });
}

module.exports = { launchChromium };
