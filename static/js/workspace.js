/* Workspace pages: small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";

  // Usage filter: apply a choice at once; the date fields only matter for a custom range.
  var filter = document.getElementById("usage-filter");
  if (filter) {
    var custom = filter.querySelector(".ws-custom");
    var apply = filter.querySelector(".ws-apply");
    var isCustom = function () {
      var r = filter.querySelector('input[name="range"]:checked');
      return r && r.value === "custom";
    };
    var sync = function () {
      if (custom) custom.hidden = !isCustom();
      if (apply) apply.hidden = !isCustom();
      filter.querySelectorAll(".seg-item").forEach(function (label) {
        var input = label.querySelector("input");
        label.classList.toggle("on", !!(input && input.checked));
      });
    };
    filter.addEventListener("change", function (event) {
      sync();
      var name = event.target.name;
      if (name === "start" || name === "end" || (name === "range" && isCustom())) return;
      filter.submit();
    });
    sync();
  }

  // Chart tooltips: the SVG's <title>s, shown at once next to the pointer.
  var tip = null;
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    svg.querySelectorAll("title").forEach(function (title) {
      var shape = title.parentNode;
      shape.setAttribute("data-tip", title.textContent);
      shape.setAttribute("tabindex", "-1");
      title.remove();
    });
    svg.addEventListener("mousemove", function (event) {
      var text = event.target.getAttribute && event.target.getAttribute("data-tip");
      if (!text) {
        if (tip) tip.hidden = true;
        return;
      }
      if (!tip) {
        tip = document.createElement("div");
        tip.className = "chart-tip";
        document.body.appendChild(tip);
      }
      tip.textContent = text;
      tip.hidden = false;
      var x = event.pageX + 14, y = event.pageY + 14;
      if (x + tip.offsetWidth > window.scrollX + document.documentElement.clientWidth - 8) {
        x = event.pageX - tip.offsetWidth - 14;
      }
      tip.style.left = x + "px";
      tip.style.top = y + "px";
    });
    svg.addEventListener("mouseleave", function () {
      if (tip) tip.hidden = true;
    });
  });

  // Copy the new API key.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.querySelector(button.getAttribute("data-copy"));
      if (!source) return;
      var done = function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 2000);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(source.textContent.trim()).then(done);
      } else {
        var range = document.createRange();
        range.selectNodeContents(source);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        try { document.execCommand("copy"); done(); } catch (e) { /* selected: the user copies */ }
      }
    });
  });

  // Destructive buttons ask first.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
})();
