/* brainlrp offline slice viewer: three orthogonal slices of a volume over the
 * template, drawn on canvases from base64-encoded data embedded in the page.
 * Plain JavaScript, no libraries, no network. Neurological convention: the
 * subject's left is on the left of the coronal and axial views. */
(function () {
  "use strict";

  function decode(entry) {
    var bin = atob(entry.b64);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    if (entry.dtype === "u2") return new Uint16Array(bytes.buffer);
    return bytes;
  }

  function fmt(v) {
    if (!isFinite(v)) return "–";
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e4 || a < 1e-3) return v.toExponential(2);
    return v.toPrecision(3);
  }

  function Viewer(root) {
    var data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
    this.root = root;
    this.d = data;
    var n = data.dims, nv = n[0] * n[1] * n[2];
    var bits = decode(data.mask);
    this.index = new Int32Array(nv);
    var pos = 0;
    for (var v = 0; v < nv; v++) {
      var on = (bits[v >> 3] >> (7 - (v & 7))) & 1;
      this.index[v] = on ? pos++ : -1;
    }
    this.bg = decode(data.background);
    this.labels = data.labels ? decode(data.labels) : null;
    this.luts = {};
    for (var key in data.luts) this.luts[key] = decode(data.luts[key]);
    this.layers = data.overlays.map(function (o) {
      return { meta: o, values: decode(o.data) };
    });
    this.layer = 0;
    this.thresholdFraction = data.overlays.length ? data.overlays[0].threshold_fraction : 0.2;
    this.cursor = data.overlays.length ? data.overlays[0].peak.slice() :
      [n[0] >> 1, n[1] >> 1, n[2] >> 1];
    this.setup();
    this.render();
  }

  Viewer.prototype.q = function (sel) { return this.root.querySelector(sel); };

  Viewer.prototype.mm = function (axis, i) {
    return this.d.origin[axis] + this.d.step[axis] * i;
  };

  Viewer.prototype.value = function (layer, idx) {
    if (idx < 0) return 0;
    var m = layer.meta, q = layer.values[idx];
    return m.signed ? (q - 128) / 127 * m.scale : q / 255 * m.scale;
  };

  /* Views: 0 sagittal (y across, z up), 1 coronal (x across, z up), 2 axial (x across, y up). */
  Viewer.prototype.viewAxes = function (view) {
    return [[1, 2], [0, 2], [0, 1]][view];
  };

  Viewer.prototype.setup = function () {
    var self = this, n = this.d.dims;
    this.canvases = [];
    ["sagittal", "coronal", "axial"].forEach(function (name, view) {
      var c = self.q("canvas[data-view='" + name + "']");
      var ax = self.viewAxes(view);
      var w = n[ax[0]], h = n[ax[1]];
      var zoom = self.d.zoom;
      c.width = Math.round(w * zoom);
      c.height = Math.round(h * zoom);
      var off = document.createElement("canvas");
      off.width = w;
      off.height = h;
      self.canvases.push({ canvas: c, off: off, view: view, w: w, h: h });
      var drag = false;
      function pick(ev) {
        var r = c.getBoundingClientRect();
        var px = (ev.clientX - r.left) / r.width * w;
        var py = (ev.clientY - r.top) / r.height * h;
        self.cursor[ax[0]] = Math.max(0, Math.min(w - 1, Math.floor(px)));
        self.cursor[ax[1]] = Math.max(0, Math.min(h - 1, Math.floor(h - py)));
        self.render();
      }
      c.addEventListener("mousedown", function (ev) { drag = true; pick(ev); });
      c.addEventListener("mousemove", function (ev) { if (drag) pick(ev); });
      window.addEventListener("mouseup", function () { drag = false; });
    });
    ["x", "y", "z"].forEach(function (name, axis) {
      var s = self.q("input[data-axis='" + name + "']");
      s.min = 0;
      s.max = n[axis] - 1;
      s.addEventListener("input", function () {
        self.cursor[axis] = parseInt(s.value, 10);
        self.render();
      });
    });
    var sel = this.q("select.viewer-map");
    this.layers.forEach(function (layer, i) {
      var o = document.createElement("option");
      o.value = i;
      o.textContent = layer.meta.name;
      sel.appendChild(o);
    });
    sel.addEventListener("change", function () {
      self.layer = parseInt(sel.value, 10);
      self.render();
    });
    var thr = this.q("input.viewer-threshold");
    thr.value = Math.round(this.thresholdFraction * 100);
    thr.addEventListener("input", function () {
      self.thresholdFraction = parseInt(thr.value, 10) / 100;
      self.render();
    });
    this.q("button.viewer-peak").addEventListener("click", function () {
      if (self.layers.length) self.cursor = self.layers[self.layer].meta.peak.slice();
      self.render();
    });
  };

  Viewer.prototype.render = function () {
    var self = this;
    this.canvases.forEach(function (c) { self.drawView(c); });
    this.drawColorbar();
    this.updateReadout();
  };

  Viewer.prototype.drawView = function (c) {
    var n = this.d.dims, ax = this.viewAxes(c.view);
    var fixed = c.view === 0 ? 0 : (c.view === 1 ? 1 : 2);
    var layer = this.layers[this.layer];
    var meta = layer ? layer.meta : null;
    var lut = meta ? this.luts[meta.cmap] : null;
    var ctx = c.off.getContext("2d");
    var img = ctx.createImageData(c.w, c.h);
    var px = img.data, ijk = [0, 0, 0];
    ijk[fixed] = this.cursor[fixed];
    var thr = meta ? this.thresholdFraction * meta.vmax : 0;
    var alpha = 0.92;
    for (var row = 0; row < c.h; row++) {
      ijk[ax[1]] = c.h - 1 - row;
      for (var col = 0; col < c.w; col++) {
        ijk[ax[0]] = col;
        var v = (ijk[0] * n[1] + ijk[1]) * n[2] + ijk[2];
        var idx = this.index[v];
        var o = (row * c.w + col) * 4;
        var g = idx >= 0 ? this.bg[idx] : 0;
        var r = g, gg = g, b = g;
        if (meta && idx >= 0) {
          var val = this.value(layer, idx);
          if (Math.abs(val) >= thr && val !== 0) {
            var t = meta.signed ? (val / meta.vmax + 1) / 2 : val / meta.vmax;
            var li = Math.max(0, Math.min(255, Math.round(t * 255))) * 3;
            r = (1 - alpha) * g + alpha * lut[li];
            gg = (1 - alpha) * g + alpha * lut[li + 1];
            b = (1 - alpha) * g + alpha * lut[li + 2];
          }
        }
        px[o] = r; px[o + 1] = gg; px[o + 2] = b; px[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    var vctx = c.canvas.getContext("2d");
    vctx.imageSmoothingEnabled = true;
    vctx.fillStyle = "black";
    vctx.fillRect(0, 0, c.canvas.width, c.canvas.height);
    vctx.drawImage(c.off, 0, 0, c.canvas.width, c.canvas.height);
    var sx = c.canvas.width / c.w, sy = c.canvas.height / c.h;
    var cx = (this.cursor[ax[0]] + 0.5) * sx, cy = (c.h - this.cursor[ax[1]] - 0.5) * sy;
    vctx.strokeStyle = "rgba(0,229,255,0.75)";
    vctx.lineWidth = 1;
    vctx.beginPath();
    vctx.moveTo(cx, 0); vctx.lineTo(cx, c.canvas.height);
    vctx.moveTo(0, cy); vctx.lineTo(c.canvas.width, cy);
    vctx.stroke();
    vctx.fillStyle = "white";
    vctx.font = "bold 13px sans-serif";
    var marks = c.view === 0 ? ["P", "A"] : ["L", "R"];
    vctx.fillText(marks[0], 6, 16);
    vctx.fillText(marks[1], c.canvas.width - 16, 16);
    vctx.font = "12px sans-serif";
    var axisName = "xyz"[fixed];
    vctx.fillText(axisName + " = " + Math.round(this.mm(fixed, this.cursor[fixed])) + " mm",
                  6, c.canvas.height - 8);
  };

  Viewer.prototype.drawColorbar = function () {
    var c = this.q("canvas.viewer-colorbar");
    var layer = this.layers[this.layer];
    if (!layer) return;
    var meta = layer.meta, lut = this.luts[meta.cmap];
    var ctx = c.getContext("2d"), w = c.width, h = c.height;
    var barH = 14, top = 4;
    ctx.clearRect(0, 0, w, h);
    for (var x = 0; x < w; x++) {
      var li = Math.round(x / (w - 1) * 255) * 3;
      ctx.fillStyle = "rgb(" + lut[li] + "," + lut[li + 1] + "," + lut[li + 2] + ")";
      ctx.fillRect(x, top, 1, barH);
    }
    var lo = meta.signed ? -meta.vmax : 0;
    var thrs = meta.signed ? [-this.thresholdFraction, this.thresholdFraction] :
      [this.thresholdFraction];
    ctx.fillStyle = "#888";
    thrs.forEach(function (t) {
      var tx = meta.signed ? (t + 1) / 2 * (w - 1) : t * (w - 1);
      ctx.fillRect(Math.round(tx) - 1, top - 3, 2, barH + 6);
    });
    this.q(".viewer-cb-min").textContent = fmt(lo);
    this.q(".viewer-cb-max").textContent = fmt(meta.vmax);
    this.q(".viewer-unit").textContent = meta.unit;
    this.q(".viewer-threshold-value").textContent =
      fmt(this.thresholdFraction * meta.vmax);
  };

  Viewer.prototype.updateReadout = function () {
    var n = this.d.dims, c = this.cursor;
    var v = (c[0] * n[1] + c[1]) * n[2] + c[2];
    var idx = this.index[v];
    var self = this;
    ["x", "y", "z"].forEach(function (name, axis) {
      self.q("input[data-axis='" + name + "']").value = c[axis];
      self.q(".viewer-" + name).textContent = Math.round(self.mm(axis, c[axis]));
    });
    var layer = this.layers[this.layer];
    var val = layer ? this.value(layer, idx) : NaN;
    this.q(".viewer-coords").textContent = "MNI x = " + Math.round(this.mm(0, c[0])) +
      ", y = " + Math.round(this.mm(1, c[1])) + ", z = " + Math.round(this.mm(2, c[2])) +
      " mm";
    this.q(".viewer-value").textContent = idx < 0 ? "outside the brain mask" :
      (layer ? "≈ " + fmt(val) + " " + layer.meta.unit : "");
    var region = "";
    if (this.labels && idx >= 0) {
      var code = this.labels[idx];
      region = code > 0 ? this.d.label_names[code - 1] : "no atlas label";
    }
    this.q(".viewer-region").textContent = region;
  };

  function start() {
    var roots = document.querySelectorAll(".brainlrp-viewer");
    for (var i = 0; i < roots.length; i++) {
      try {
        roots[i].viewer = new Viewer(roots[i]);
      } catch (err) {
        roots[i].querySelector(".viewer-error").textContent =
          "The viewer could not start: " + err.message;
        throw err;
      }
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
