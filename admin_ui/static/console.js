/* kaquan console: small progressive enhancements; every page works without this file. */
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try {
      document.execCommand("copy");
    } finally {
      document.body.removeChild(area);
    }
    return Promise.resolve();
  }

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-nav-toggle]");
    if (toggle) {
      var nav = document.getElementById(toggle.getAttribute("aria-controls"));
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      return;
    }
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var source = document.getElementById(copy.getAttribute("data-copy"));
      var label = copy.textContent;
      copyText(source.textContent.trim()).then(function () {
        copy.textContent = copy.getAttribute("data-copied") || label;
        window.setTimeout(function () { copy.textContent = label; }, 1800);
      });
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    if (form.hasAttribute("data-download")) {
      return; // a download leaves the page in place: the form must stay usable
    }
    if (form.dataset.submitting === "1") {
      event.preventDefault(); // a second click must not send the form twice
      return;
    }
    form.dataset.submitting = "1";
  });

  // Role selects save on change; their button stays for keyboard users and for pages without JS.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    var button = select.form.querySelector("[data-role-save]");
    if (button) { button.hidden = true; }
    select.addEventListener("change", function () {
      if (select.form.requestSubmit) { select.form.requestSubmit(); } else { select.form.submit(); }
    });
  });

  // Product form: show the fields the chosen kind and validity use (all are shown without JS).
  document.querySelectorAll("[data-product-form]").forEach(function (form) {
    var kind = form.querySelector("[data-kind]");
    var validity = form.querySelector("[name=validity_kind]");
    function sync() {
      form.querySelectorAll("[data-show-kind]").forEach(function (el) {
        el.hidden = el.getAttribute("data-show-kind").split(" ").indexOf(kind.value) < 0;
      });
      form.querySelectorAll("[data-show-validity]").forEach(function (el) {
        el.hidden = el.getAttribute("data-show-validity") !== validity.value;
      });
    }
    if (kind && validity) {
      kind.addEventListener("change", sync);
      validity.addEventListener("change", sync);
      sync();
    }
  });

  // "Select all" checkboxes of a code list.
  document.querySelectorAll("[data-check-all]").forEach(function (all) {
    var table = all.closest("table");
    all.addEventListener("change", function () {
      table.querySelectorAll("tbody input[type=checkbox]").forEach(function (box) { box.checked = all.checked; });
    });
  });

  // Filter selects apply on change.
  document.querySelectorAll("select[data-autosubmit-filter]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // Pages restored from the back/forward cache must accept a new submit.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-submitting]").forEach(function (form) {
      delete form.dataset.submitting;
    });
  });
})();
