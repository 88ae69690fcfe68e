/* Camera scanning on the redeem page (核销台): the browser's BarcodeDetector when it has one, else the
   vendored jsQR (/static/vendor/jsQR.js, loaded on first use). The scanned text goes into the code input
   unchanged; the clerk confirms with the big Redeem button. Without a camera (denied, none, not HTTPS) a
   message says so and the manual input stays. A photo of a QR (file input) goes through the same decoder. */
(function () {
  "use strict";
  var root = document.querySelector("[data-scan]");
  if (!root) { return; }
  var input = document.querySelector("[data-code-input]");
  var redeemButton = document.querySelector("[data-redeem]");
  var startButton = root.querySelector("[data-scan-start]");
  var stopButton = root.querySelector("[data-scan-stop]");
  var fileInput = root.querySelector("[data-scan-file]");
  var video = root.querySelector("video");
  var status = root.querySelector("[data-scan-status]");
  var text = JSON.parse(root.getAttribute("data-scan-text"));
  var stream = null;
  var detector = null;
  var timer = null;
  var canvas = document.createElement("canvas");
  var context = canvas.getContext("2d", { willReadFrequently: true });

  function say(message, bad) {
    status.textContent = message;
    status.classList.toggle("scan-status-bad", !!bad);
  }

  function loadJsQR() {
    if (window.jsQR) { return Promise.resolve(window.jsQR); }
    return new Promise(function (resolve, reject) {
      var tag = document.createElement("script");
      tag.src = "/static/vendor/jsQR.js";
      tag.onload = function () { resolve(window.jsQR); };
      tag.onerror = function () { reject(new Error("jsQR")); };
      document.head.appendChild(tag);
    });
  }

  function nativeDetector() {
    if (detector !== null) { return Promise.resolve(detector); }
    if (!("BarcodeDetector" in window)) { detector = false; return Promise.resolve(false); }
    return window.BarcodeDetector.getSupportedFormats().then(function (formats) {
      detector = formats.indexOf("qr_code") >= 0 ? new window.BarcodeDetector({ formats: ["qr_code"] }) : false;
      return detector;
    }, function () { detector = false; return false; });
  }

  /* The text of the QR code in an image, video frame or canvas (null when there is none). */
  function decode(source, width, height) {
    return nativeDetector().then(function (native) {
      if (native) {
        return native.detect(source).then(function (found) { return found.length ? found[0].rawValue : null; });
      }
      canvas.width = width;
      canvas.height = height;
      context.drawImage(source, 0, 0, width, height);
      var pixels = context.getImageData(0, 0, width, height);
      return loadJsQR().then(function (jsQR) {
        var hit = jsQR(pixels.data, width, height, { inversionAttempts: "attemptBoth" });
        return hit ? hit.data : null;
      });
    });
  }

  function scanned(value) {
    stop();
    input.value = value;
    say(text.scanned.replace("%(code)s", value));
    redeemButton.focus();
    root.dispatchEvent(new CustomEvent("kaquan:scanned", { detail: value, bubbles: true }));
  }

  function stop() {
    if (timer) { clearTimeout(timer); timer = null; }
    if (stream) { stream.getTracks().forEach(function (t) { t.stop(); }); stream = null; }
    video.hidden = true;
    stopButton.hidden = true;
    startButton.hidden = false;
  }

  function tick() {
    if (!stream) { return; }
    var width = video.videoWidth, height = video.videoHeight;
    var next = function () { timer = setTimeout(tick, 150); };
    if (!width || !height) { next(); return; }
    var scale = Math.min(1, 800 / Math.max(width, height));
    decode(video, Math.round(width * scale), Math.round(height * scale)).then(function (value) {
      if (value) { scanned(value); } else { next(); }
    }, next);
  }

  function start() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say(text.unavailable, true);
      return;
    }
    say(text.starting);
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false }).then(function (s) {
      stream = s;
      video.srcObject = s;
      video.hidden = false;
      stopButton.hidden = false;
      startButton.hidden = true;
      return video.play().then(function () { say(text.aim); tick(); });
    }).catch(function (error) {
      stop();
      var denied = error && (error.name === "NotAllowedError" || error.name === "SecurityError");
      say(denied ? text.denied : text.unavailable, true);
    });
  }

  function fromFile() {
    var file = fileInput.files && fileInput.files[0];
    if (!file) { return; }
    var image = new Image();
    var url = URL.createObjectURL(file);
    image.onload = function () {
      var scale = Math.min(1, 1200 / Math.max(image.naturalWidth, image.naturalHeight));
      decode(image, Math.round(image.naturalWidth * scale), Math.round(image.naturalHeight * scale))
        .then(function (value) {
          URL.revokeObjectURL(url);
          if (value) { scanned(value); } else { say(text.nothing, true); }
        }, function () { say(text.nothing, true); });
    };
    image.onerror = function () { URL.revokeObjectURL(url); say(text.nothing, true); };
    image.src = url;
    fileInput.value = "";
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", function () { stop(); say(""); });
  fileInput.addEventListener("change", fromFile);
  window.addEventListener("pagehide", stop);
  root.hidden = false;
  /* For tests and other scripts: the text of the QR in an image (or null). */
  window.kaquanScan = { decode: decode, forceJsQR: function () { detector = false; } };
})();
