// Backlight pages: live map controls, and pan / zoom of the map. No inline script anywhere
// (the Content-Security-Policy forbids it); everything works without this file too.
(function () {
  "use strict";

  function setupMap() {
    var form = document.getElementById("map-form");
    var img = document.getElementById("map-img");
    var viewport = document.getElementById("map-viewport");
    var stage = document.getElementById("map-stage");
    if (!form || !img || !viewport || !stage) { return; }
    document.documentElement.classList.add("js");

    function showOutputs() {
      form.querySelectorAll("output[data-for]").forEach(function (out) {
        var input = form.elements.namedItem(out.getAttribute("data-for"));
        if (input) { out.textContent = Math.round(parseFloat(input.value) * 100) + "%"; }
      });
    }

    function params() {
      var p = new URLSearchParams();
      new FormData(form).forEach(function (value, key) { p.set(key, String(value)); });
      return p;
    }

    function update() {
      var p = params();
      img.classList.add("loading");
      img.src = form.getAttribute("data-map") + "?" + p.toString();
      var view = p.get("view") || "frequency";
      img.alt = img.alt.replace(/\((frequency|performance) view\)$/, "(" + view + " view)");
      if (window.history && window.history.replaceState) {
        window.history.replaceState(null, "", window.location.pathname + "?" + p.toString() + "#map");
      }
    }

    img.addEventListener("load", function () { img.classList.remove("loading"); });
    img.addEventListener("error", function () { img.classList.remove("loading"); });
    form.addEventListener("input", showOutputs);
    form.addEventListener("change", update);
    form.addEventListener("submit", function (event) { event.preventDefault(); update(); });

    // pan and zoom: a CSS transform on the image's container
    var state = { x: 0, y: 0, s: 1 };
    function apply() {
      stage.style.transform = "translate(" + state.x + "px, " + state.y + "px) scale(" + state.s + ")";
    }
    function zoomAt(factor, px, py) {
      var s = Math.min(8, Math.max(0.25, state.s * factor));
      var k = s / state.s;
      state.x = px - (px - state.x) * k;
      state.y = py - (py - state.y) * k;
      state.s = s;
      apply();
    }
    function centre() {
      var r = viewport.getBoundingClientRect();
      return [r.width / 2, r.height / 2];
    }
    viewport.addEventListener("wheel", function (event) {
      event.preventDefault();
      var r = viewport.getBoundingClientRect();
      zoomAt(event.deltaY < 0 ? 1.15 : 1 / 1.15, event.clientX - r.left, event.clientY - r.top);
    }, { passive: false });
    form.querySelectorAll("button[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () {
        var how = button.getAttribute("data-zoom");
        var c = centre();
        if (how === "in") { zoomAt(1.25, c[0], c[1]); }
        else if (how === "out") { zoomAt(1 / 1.25, c[0], c[1]); }
        else { state = { x: 0, y: 0, s: 1 }; apply(); }
      });
    });
    var drag = null;
    viewport.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) { return; }
      drag = { x: event.clientX - state.x, y: event.clientY - state.y };
      viewport.setPointerCapture(event.pointerId);
      viewport.classList.add("dragging");
    });
    viewport.addEventListener("pointermove", function (event) {
      if (!drag) { return; }
      state.x = event.clientX - drag.x;
      state.y = event.clientY - drag.y;
      apply();
    });
    function stop(event) {
      if (!drag) { return; }
      drag = null;
      viewport.classList.remove("dragging");
      if (viewport.hasPointerCapture(event.pointerId)) { viewport.releasePointerCapture(event.pointerId); }
    }
    viewport.addEventListener("pointerup", stop);
    viewport.addEventListener("pointercancel", stop);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setupMap);
  } else {
    setupMap();
  }
}());
