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
      // Without JS the toggle is a link to #nav and CSS shows the menu as its :target.
      event.preventDefault();
      var nav = document.getElementById(toggle.getAttribute("aria-controls"));
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      if (open) {
        var first = nav.querySelector("a");
        if (first) { first.focus({preventScroll: true}); }
      }
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

  document.querySelectorAll("[data-nav-toggle]").forEach(function (toggle) {
    toggle.setAttribute("role", "button");
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

  function csrfOf(form) {
    var field = form.querySelector("input[name=_csrf_token]");
    return field ? field.value : "";
  }

  // Import wizard: as soon as a file is chosen (or codes are pasted), ask the server which columns it has
  // and what they hold, and fill the mapping selects; the user can still change them.
  document.querySelectorAll("[data-import-form]").forEach(function (form) {
    var status = form.querySelector("[data-preview-status]");
    var file = form.querySelector("input[type=file]");
    var text = form.querySelector("textarea[name=text]");
    var encoding = form.querySelector("select[name=encoding]");
    var header = form.querySelector("select[name=map_header]");
    var timer = null;
    var seq = 0;

    function fill(select, columns, chosen, allowNone) {
      var keep = [];
      Array.prototype.forEach.call(select.options, function (o) {
        if (o.value === "" || o.value === "-") { keep.push(o); }
      });
      select.innerHTML = "";
      keep.forEach(function (o) { if (allowNone || o.value !== "-") { select.appendChild(o); } });
      columns.forEach(function (label, i) {
        var o = document.createElement("option");
        o.value = String(i);
        o.textContent = label;
        select.appendChild(o);
      });
      select.value = chosen === null || chosen === undefined ? (allowNone ? "-" : "") : String(chosen);
    }

    function preview() {
      var body = new FormData();
      if (file.files && file.files.length) {
        body.append("file", file.files[0]);
      } else if (text.value.trim()) {
        body.append("text", text.value.slice(0, 200000));
      } else {
        return;
      }
      body.append("encoding", encoding.value);
      body.append("_csrf_token", csrfOf(form));
      var mine = ++seq;
      status.textContent = status.getAttribute("data-waiting");
      status.classList.remove("text-danger");
      fetch("/console/imports/preview", {
        method: "POST", body: body, credentials: "same-origin", headers: {"X-CSRFToken": csrfOf(form)}
      }).then(function (r) {
        return r.json().then(function (data) { return {ok: r.ok, data: data}; });
      }).then(function (res) {
        if (mine !== seq) { return; }
        if (!res.ok) {
          status.textContent = res.data.error || "";
          status.classList.add("text-danger");
          return;
        }
        var d = res.data;
        form.querySelectorAll("select[data-map]").forEach(function (select) {
          var name = select.getAttribute("data-map");
          fill(select, d.columns, d[name], name !== "number");
        });
        header.value = d.has_header ? "yes" : "no";
        status.textContent = status.getAttribute("data-detected") + " " +
          [d.file_format.toUpperCase(), (d.encoding || "").toUpperCase()].filter(Boolean).join(" · ");
        form.setAttribute("data-previewed", "1");
      }).catch(function () {
        if (mine === seq) { status.textContent = ""; }
      });
    }

    file.addEventListener("change", preview);
    encoding.addEventListener("change", preview);
    if ((file.files && file.files.length) || text.value.trim()) { preview(); } // chosen before this ran (or kept on back)
    text.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(preview, 600);
    });
  });

  // Progress bar of an import or generation job: poll until it has finished, then go on.
  document.querySelectorAll("[data-progress]").forEach(function (box) {
    var bar = box.querySelector("[data-bar]");
    var fillEl = bar.querySelector("span");
    var label = box.querySelector("[data-progress-label]");
    var count = box.querySelector("[data-progress-count]");
    var error = box.querySelector("[data-progress-error]");
    var url = box.getAttribute("data-url");
    var delay = 500;

    function fmt(n) { return Number(n).toLocaleString(); }

    function poll() {
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}, cache: "no-store"})
        .then(function (r) { return r.json(); })
        .then(function (d) {
          var pct = Math.max(0, Math.min(100, d.percent || 0));
          if (d.status === "imported") { pct = 100; }
          fillEl.style.width = pct + "%";
          bar.setAttribute("aria-valuenow", String(pct));
          label.textContent = d.label;
          count.textContent = fmt(d.done) + " / " + fmt(d.total);
          box.setAttribute("data-status", d.status);
          // No worker has moved the job for longer than the heartbeat: say so instead of freezing.
          bar.classList.toggle("progress-waiting", !!d.waiting);
          box.toggleAttribute("data-waiting", !!d.waiting);
          if (d.status === "failed") {
            bar.classList.add("progress-failed");
            error.textContent = d.error || "";
            error.hidden = false;
          }
          if (d.finished && d.next) {
            window.setTimeout(function () { window.location.assign(d.next); }, d.status === "failed" ? 1500 : 400);
            return;
          }
          delay = Math.min(delay * 1.3, 3000);
          window.setTimeout(poll, delay);
        })
        .catch(function () { window.setTimeout(poll, 3000); });
    }
    if (box.getAttribute("data-status") !== "failed") { poll(); }
  });

  // Pages restored from the back/forward cache must accept a new submit.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-submitting]").forEach(function (form) {
      delete form.dataset.submitting;
    });
  });
})();
