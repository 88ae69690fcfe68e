/* kaquan H5: copy buttons and the resend countdown. Vanilla, no build; the pages work without it. */
(function () {
  "use strict";
  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
  function fallbackCopy(el) {
    selectText(el);
    try { return document.execCommand("copy"); } catch (e) { return false; }
  }
  function done(button, ok) {
    button.textContent = ok ? "已复制" : "请长按复制";
    button.classList.add("copied");
    setTimeout(function () { button.textContent = "复制"; button.classList.remove("copied"); }, 2000);
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var el = document.getElementById(button.getAttribute("data-copy"));
    if (!el) return;
    var text = el.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(button, true); },
        function () { done(button, fallbackCopy(el)); });
    } else {
      done(button, fallbackCopy(el));
    }
  });
  document.querySelectorAll("[data-countdown]").forEach(function (box) {
    var left = parseInt(box.getAttribute("data-countdown"), 10) || 0;
    var label = box.querySelector("[data-seconds]");
    var button = box.querySelector("button");
    function tick() {
      if (left <= 0) {
        if (button) { button.disabled = false; button.textContent = "重新发送"; }
        if (label) label.parentNode.hidden = true;
        return;
      }
      if (label) label.textContent = String(left);
      left -= 1;
      setTimeout(tick, 1000);
    }
    if (button) button.disabled = left > 0;
    tick();
  });
})();
