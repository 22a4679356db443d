/*
 * Mediaplane upload widget: one <script> tag, no dependencies.
 *
 *   <script src="https://media.example.com/images/widget.js" defer></script>
 *   <mediaplane-uploader widget-key="pk_..."></mediaplane-uploader>
 *
 * Attributes:
 *   widget-key             publishable key (bound to your site's origins); mints one-time upload URLs
 *   direct-upload-endpoint instead of a widget key: your own backend URL that answers a POST with
 *                          {"uploadURL": "..."} (or Cloudflare's {"result": {"uploadURL": "..."}})
 *   server                 Mediaplane base URL (default: where this script was loaded from)
 *   accept                 allowed MIME types (default image/jpeg,image/png,image/gif,image/webp)
 *   max-file-bytes         client-side size limit (default 10485760; the server also enforces its own)
 *   max-files              most files at once (default 20)
 *   label                  text of the drop zone
 * Events (bubble, composed): upload-start, upload-progress {percent}, upload-success {id, variants,
 *   image}, upload-error {file, message, code}.
 * Theme with CSS variables on the element: --mp-accent, --mp-bg, --mp-text, --mp-border,
 *   --mp-radius, --mp-font, --mp-error, --mp-success.
 */
(function () {
  "use strict";
  if (window.customElements && customElements.get("mediaplane-uploader")) return;

  var scriptSrc = (document.currentScript && document.currentScript.src) || "";
  var defaultServer = scriptSrc ? new URL(scriptSrc, location.href).origin : location.origin;
  var DEFAULT_ACCEPT = "image/jpeg,image/png,image/gif,image/webp";

  var STYLE = [
    ":host{display:block;font-family:var(--mp-font,system-ui,sans-serif);color:var(--mp-text,#1f2328)}",
    ".zone{border:2px dashed var(--mp-border,#8c959f);border-radius:var(--mp-radius,12px);background:var(--mp-bg,#f6f8fa);",
    "padding:24px;text-align:center;cursor:pointer;outline:none;transition:border-color .15s}",
    ".zone:focus-visible,.zone.over{border-color:var(--mp-accent,#0969da);box-shadow:0 0 0 3px color-mix(in srgb,var(--mp-accent,#0969da) 30%,transparent)}",
    ".hint{font-size:.85em;opacity:.75;margin-top:4px}",
    "ul{list-style:none;padding:0;margin:12px 0 0}",
    "li{display:grid;grid-template-columns:56px 1fr auto;gap:10px;align-items:center;padding:8px;border-radius:var(--mp-radius,12px);background:var(--mp-bg,#f6f8fa);margin-top:8px}",
    "img.thumb{width:56px;height:56px;object-fit:cover;border-radius:6px;background:#ddd}",
    ".name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-weight:600}",
    "progress{width:100%;height:8px;accent-color:var(--mp-accent,#0969da)}",
    ".status{font-size:.85em}",
    ".status.error{color:var(--mp-error,#cf222e)}.status.done{color:var(--mp-success,#1a7f37)}",
    "button{font:inherit;border:1px solid var(--mp-border,#8c959f);background:#fff;border-radius:6px;padding:4px 10px;cursor:pointer}",
    "button:focus-visible{outline:2px solid var(--mp-accent,#0969da)}",
    "input[type=file]{position:absolute;width:1px;height:1px;opacity:0;pointer-events:none}"
  ].join("");

  function fmtBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(0) + " KB";
    return (n / 1048576).toFixed(1) + " MB";
  }

  function errorOf(xhr, fallback) {
    try {
      var body = JSON.parse(xhr.responseText);
      if (body && body.errors && body.errors[0]) return { message: body.errors[0].message, code: body.errors[0].code };
    } catch (e) { /* not JSON */ }
    return { message: fallback + " (HTTP " + xhr.status + ")", code: xhr.status };
  }

  class MediaplaneUploader extends HTMLElement {
    constructor() {
      super();
      this._items = [];
      var root = this.attachShadow({ mode: "open" });
      root.innerHTML =
        "<style>" + STYLE + "</style>" +
        '<div class="zone" role="button" tabindex="0" part="zone">' +
        '<div class="label"></div><div class="hint"></div></div>' +
        '<input type="file" multiple tabindex="-1" aria-hidden="true">' +
        '<ul role="list" aria-label="Uploads" part="list"></ul>' +
        '<div class="sr" aria-live="polite" style="position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)"></div>';
      this._zone = root.querySelector(".zone");
      this._input = root.querySelector("input");
      this._list = root.querySelector("ul");
      this._live = root.querySelector(".sr");
      this._onPaste = this._onPaste.bind(this);
    }

    connectedCallback() {
      var self = this;
      var label = this.getAttribute("label") || "Drop images here, paste, or choose files";
      this._zone.querySelector(".label").textContent = label;
      this._zone.querySelector(".hint").textContent =
        "Accepted: " + this._accept().map(function (t) { return t.replace("image/", ""); }).join(", ") +
        " · up to " + fmtBytes(this._maxBytes());
      this._zone.setAttribute("aria-label", label + ". Press Enter to choose files.");
      this._input.setAttribute("accept", this._accept().join(","));
      this._zone.addEventListener("click", function () { self._input.click(); });
      this._zone.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); self._input.click(); }
      });
      this._input.addEventListener("change", function () { self.addFiles(self._input.files); self._input.value = ""; });
      ["dragenter", "dragover"].forEach(function (type) {
        self._zone.addEventListener(type, function (e) { e.preventDefault(); self._zone.classList.add("over"); });
      });
      ["dragleave", "drop"].forEach(function (type) {
        self._zone.addEventListener(type, function () { self._zone.classList.remove("over"); });
      });
      this._zone.addEventListener("drop", function (e) {
        e.preventDefault();
        if (e.dataTransfer && e.dataTransfer.files) self.addFiles(e.dataTransfer.files);
      });
      if (this.getAttribute("paste") !== "off") document.addEventListener("paste", this._onPaste);
    }

    disconnectedCallback() { document.removeEventListener("paste", this._onPaste); }

    _onPaste(e) {
      var files = [];
      var items = (e.clipboardData && e.clipboardData.items) || [];
      for (var i = 0; i < items.length; i++) {
        if (items[i].kind === "file") { var f = items[i].getAsFile(); if (f) files.push(f); }
      }
      if (files.length) { e.preventDefault(); this.addFiles(files); }
    }

    _accept() { return (this.getAttribute("accept") || DEFAULT_ACCEPT).split(",").map(function (s) { return s.trim(); }).filter(Boolean); }
    _maxBytes() { return parseInt(this.getAttribute("max-file-bytes") || "10485760", 10); }
    _server() { return (this.getAttribute("server") || defaultServer).replace(/\/+$/, ""); }

    _emit(type, detail) {
      this.dispatchEvent(new CustomEvent(type, { detail: detail, bubbles: true, composed: true }));
    }

    _announce(text) { this._live.textContent = text; }

    /** Adds files (FileList or array): checks them, lists them and starts their uploads. */
    addFiles(fileList) {
      var files = Array.prototype.slice.call(fileList || []);
      var maxFiles = parseInt(this.getAttribute("max-files") || "20", 10);
      var active = this._items.filter(function (it) { return it.state === "uploading"; }).length;
      for (var i = 0; i < files.length; i++) {
        var item = this._addItem(files[i]);
        var problem = this._check(files[i]);
        if (!problem && active >= maxFiles) problem = "Too many files at once (at most " + maxFiles + ")";
        if (problem) { this._fail(item, { message: problem, code: "client_check" }, false); continue; }
        active++;
        this._start(item);
      }
    }

    _check(file) {
      if (this._accept().indexOf(file.type) < 0) return file.name + ": type " + (file.type || "unknown") + " is not accepted";
      if (file.size > this._maxBytes()) return file.name + ": " + fmtBytes(file.size) + " is over the " + fmtBytes(this._maxBytes()) + " limit";
      if (file.size === 0) return file.name + ": the file is empty";
      return null;
    }

    _addItem(file) {
      var li = document.createElement("li");
      li.setAttribute("part", "item");
      var thumb = document.createElement("img");
      thumb.className = "thumb";
      thumb.alt = "Preview of " + file.name;
      if (/^image\//.test(file.type)) { thumb.src = URL.createObjectURL(file); }
      var mid = document.createElement("div");
      var name = document.createElement("div");
      name.className = "name";
      name.textContent = file.name + " (" + fmtBytes(file.size) + ")";
      var progress = document.createElement("progress");
      progress.max = 100; progress.value = 0;
      progress.setAttribute("aria-label", "Upload progress of " + file.name);
      var status = document.createElement("div");
      status.className = "status";
      status.setAttribute("role", "status");
      mid.appendChild(name); mid.appendChild(progress); mid.appendChild(status);
      var actions = document.createElement("div");
      var cancel = document.createElement("button");
      cancel.type = "button"; cancel.textContent = "Cancel"; cancel.className = "cancel";
      cancel.setAttribute("aria-label", "Cancel upload of " + file.name);
      var retry = document.createElement("button");
      retry.type = "button"; retry.textContent = "Retry"; retry.className = "retry"; retry.hidden = true;
      retry.setAttribute("aria-label", "Retry upload of " + file.name);
      actions.appendChild(cancel); actions.appendChild(retry);
      li.appendChild(thumb); li.appendChild(mid); li.appendChild(actions);
      this._list.appendChild(li);
      var item = { file: file, li: li, progress: progress, status: status, cancel: cancel, retry: retry, state: "new", xhr: null, uploadURL: null };
      var self = this;
      cancel.addEventListener("click", function () { self._cancel(item); });
      retry.addEventListener("click", function () { self._start(item); });
      this._items.push(item);
      return item;
    }

    _setStatus(item, text, kind) {
      item.status.textContent = text;
      item.status.className = "status" + (kind ? " " + kind : "");
    }

    _cancel(item) {
      if (item.xhr) { item.xhr.abort(); item.xhr = null; }
      item.state = "cancelled";
      item.cancel.hidden = true;
      item.retry.hidden = false;
      this._setStatus(item, "Cancelled", "error");
      this._announce(item.file.name + " cancelled");
      this._emit("upload-error", { file: item.file.name, message: "cancelled", code: "cancelled" });
    }

    _fail(item, error, retryable) {
      item.state = "error";
      item.xhr = null;
      item.cancel.hidden = true;
      item.retry.hidden = !retryable;
      this._setStatus(item, error.message, "error");
      this._announce("Upload failed: " + error.message);
      this._emit("upload-error", { file: item.file.name, message: error.message, code: error.code });
    }

    /** Gets a one-time upload URL from the widget endpoint or the site's own backend. */
    _mint(done) {
      var xhr = new XMLHttpRequest();
      var own = this.getAttribute("direct-upload-endpoint");
      if (own) {
        xhr.open("POST", own);
      } else {
        xhr.open("POST", this._server() + "/images/widget/direct_upload");
        xhr.setRequestHeader("X-Widget-Key", this.getAttribute("widget-key") || "");
      }
      xhr.onload = function () {
        if (xhr.status >= 200 && xhr.status < 300) {
          try {
            var body = JSON.parse(xhr.responseText);
            var r = body.result || body;
            if (r.uploadURL) return done(null, r.uploadURL);
          } catch (e) { /* fall through */ }
          return done({ message: "The upload endpoint gave no uploadURL", code: "bad_response" });
        }
        done(errorOf(xhr, "Could not get an upload URL"));
      };
      xhr.onerror = function () { done({ message: "Network error while getting an upload URL", code: "network" }); };
      xhr.send();
    }

    _start(item) {
      var self = this;
      item.state = "uploading";
      item.cancel.hidden = false;
      item.retry.hidden = true;
      item.progress.value = 0;
      this._setStatus(item, "Preparing…");
      this._emit("upload-start", { file: item.file.name });
      var go = function (url) { item.uploadURL = url; self._send(item); };
      if (item.uploadURL) return go(item.uploadURL);
      this._mint(function (err, url) {
        if (item.state !== "uploading") return;
        if (err) return self._fail(item, err, true);
        go(url);
      });
    }

    _send(item) {
      var self = this;
      var xhr = new XMLHttpRequest();
      item.xhr = xhr;
      xhr.open("POST", item.uploadURL);
      xhr.upload.onprogress = function (e) {
        if (!e.lengthComputable) return;
        var pct = Math.round((e.loaded / e.total) * 100);
        item.progress.value = pct;
        self._setStatus(item, "Uploading… " + pct + "%");
        self._emit("upload-progress", { file: item.file.name, percent: pct, loaded: e.loaded, total: e.total });
      };
      xhr.onload = function () {
        item.xhr = null;
        if (xhr.status >= 200 && xhr.status < 300) {
          var image = null;
          try { image = JSON.parse(xhr.responseText).result; } catch (e) { /* handled below */ }
          if (!image) return self._fail(item, { message: "Unexpected response", code: "bad_response" }, true);
          item.state = "done";
          item.progress.value = 100;
          item.cancel.hidden = true;
          self._setStatus(item, "Uploaded", "done");
          self._announce(item.file.name + " uploaded");
          self._emit("upload-success", { file: item.file.name, id: image.id, variants: image.variants || [], image: image });
          return;
        }
        var err = errorOf(xhr, "Upload failed");
        // A used or expired URL cannot be retried: mint a fresh one next time.
        if (xhr.status === 409 || xhr.status === 410 || xhr.status === 404) item.uploadURL = null;
        self._fail(item, err, true);
      };
      xhr.onerror = function () { item.uploadURL = null; self._fail(item, { message: "Network error during upload", code: "network" }, true); };
      var form = new FormData();
      form.append("file", item.file, item.file.name);
      xhr.send(form);
    }
  }

  customElements.define("mediaplane-uploader", MediaplaneUploader);
})();
