/* brainlrp: one NiiVue per .brainlrp-niivue element, built from its JSON spec and the
 * page's embedded volumes (gzipped NIfTI, base64, in <script data-niivue-volume>).
 * Needs the NiiVue UMD bundle (window.niivue) first. No network: every volume is in
 * the page. A viewer starts when it comes near the screen (WebGL contexts are scarce).
 * root.dataset.state: "waiting", "loading", "ready" or "error"; root.brainlrpViewer
 * exposes goTo([x, y, z]) (MNI mm) and show(i) for scripts and tests. */
(function () {
  "use strict";

  /* NiiVue's colormapType 2: the colour scale runs from 0 to cal_max and |values|
   * below cal_min are transparent (its shader treats 1 as a translucent ramp). */
  var ZERO_TO_MAX_TRANSPARENT_BELOW_MIN = 2;

  function fmt(v) {
    if (!isFinite(v)) return "–";
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e4 || a < 1e-3) return v.toExponential(2);
    return v.toPrecision(3);
  }

  function volumeText(key) {
    var el = document.querySelector("script[data-niivue-volume='" + key + "']");
    if (!el) throw new Error("volume " + key + " is not embedded in the page");
    return el.textContent;
  }

  function load(key, extra) {
    var opts = { base64: volumeText(key), name: key + ".nii.gz" };
    for (var k in extra) opts[k] = extra[k];
    return niivue.NVImage.loadFromBase64(opts);
  }

  function Viewer(root) {
    this.root = root;
    this.spec = JSON.parse(root.querySelector("script.niivue-spec").textContent);
    this.current = 0;
    this.thresholdFraction = this.spec.overlays.length ?
      this.spec.overlays[0].threshold_fraction : 0.2;
  }

  Viewer.prototype.q = function (sel) { return this.root.querySelector(sel); };

  Viewer.prototype.start = async function () {
    var spec = this.spec, self = this;
    var nv = new niivue.Niivue({
      backColor: [0, 0, 0, 1], crosshairColor: [0, 0.9, 1, 0.8], show3Dcrosshair: false,
      crosshairWidth: 1, crosshairWidthUnit: "mm",
      isColorbar: false, multiplanarShowRender: 0, multiplanarLayout: 3,
      isRadiologicalConvention: false, logLevel: "error"
    });
    this.nv = nv;
    await nv.attachToCanvas(this.q("canvas.viewer-canvas"));
    for (var name in spec.colormaps) nv.addColormap(name, spec.colormaps[name]);
    this.background = await load(spec.background, { colormap: "gray", cal_min: 0,
                                                      cal_max: 255 });
    nv.addVolume(this.background);
    this.overlays = [];
    for (var i = 0; i < spec.overlays.length; i++) {
      var vol = await load(spec.overlays[i].volume, { colormap: "brainlrp_hot" });
      this.overlays.push(vol);
    }
    if (spec.labels) {
      this.labels = await load(spec.labels, { opacity: 0, colormapLabel: null });
      this.labels.setColormapLabel(spec.label_table);
      nv.addVolume(this.labels);
    }
    if (this.overlays.length) nv.addVolume(this.overlays[0]);
    nv.onLocationChange = function (loc) { self.readout(loc); };
    this.controls();
    this.show(0);
    if (spec.start) this.goTo(spec.start);
  };

  Viewer.prototype.controls = function () {
    var self = this;
    var sel = this.q("select.viewer-map");
    sel.addEventListener("change", function () { self.show(parseInt(sel.value, 10)); });
    var thr = this.q("input.viewer-threshold");
    thr.value = Math.round(this.thresholdFraction * 100);
    thr.addEventListener("input", function () {
      self.thresholdFraction = parseInt(thr.value, 10) / 100;
      self.style();
    });
    this.q("input.viewer-atlas").addEventListener("change", function (ev) {
      if (!self.labels) return;
      self.labels.opacity = ev.target.checked ? 0.45 : 0;
      self.nv.updateGLVolume();
    });
    this.q("button.viewer-peak").addEventListener("click", function () {
      var o = self.spec.overlays[self.current];
      if (o) self.goTo(o.peak);
    });
    var inputs = this.root.querySelectorAll("input.viewer-mm");
    function go() {
      self.goTo(Array.prototype.map.call(inputs, function (el) {
        return parseFloat(el.value) || 0;
      }));
    }
    this.q("button.viewer-go").addEventListener("click", go);
    inputs.forEach(function (el) {
      el.addEventListener("keydown", function (ev) { if (ev.key === "Enter") go(); });
    });
  };

  /* Show overlay i (the others leave the scene; the label layer stays beneath it). */
  Viewer.prototype.show = function (i) {
    var nv = this.nv;
    var now = this.overlays[this.current];
    if (now && nv.volumes.indexOf(now) >= 0 && i !== this.current) nv.removeVolume(now);
    this.current = i;
    var next = this.overlays[i];
    if (next && nv.volumes.indexOf(next) < 0) nv.addVolume(next);
    this.q("select.viewer-map").value = String(i);
    this.style();
  };

  /* Colour map and threshold of the shown overlay: 0 to vmax (symmetric when signed),
   * transparent below the threshold, as in the report's figures. */
  Viewer.prototype.style = function () {
    var o = this.spec.overlays[this.current], v = this.overlays[this.current];
    if (!o || !v) return;
    v.colormap = o.signed ? "brainlrp_pos" : "brainlrp_hot";
    v.colormapNegative = o.signed ? "brainlrp_neg" : "";
    v.colormapType = ZERO_TO_MAX_TRANSPARENT_BELOW_MIN;
    v.cal_min = Math.max(this.thresholdFraction * o.vmax, 1e-12);
    v.cal_max = o.vmax;
    v.cal_minNeg = NaN;
    v.cal_maxNeg = NaN;
    v.opacity = 0.9;
    this.nv.updateGLVolume();
    this.q(".viewer-threshold-value").textContent = fmt(this.thresholdFraction * o.vmax);
    this.q(".viewer-scale").textContent = (o.signed ? "colour scale ±" : "colour scale 0 to ") +
      fmt(o.vmax) + " " + o.unit + " (blue negative, red-yellow positive where signed); " +
      "|value| below the threshold is transparent. Largest |value|: " + fmt(o.max) + ".";
    this.nv.createOnLocationChange();
  };

  Viewer.prototype.goTo = function (mm) {
    var nv = this.nv;
    nv.scene.crosshairPos = nv.mm2frac([mm[0], mm[1], mm[2]]);
    nv.drawScene();
    nv.createOnLocationChange();
  };

  Viewer.prototype.readout = function (loc) {
    var mm = loc.mm, nv = this.nv;
    var xyz = [0, 1, 2].map(function (a) { return Math.round(mm[a]); });
    this.q(".viewer-coords").textContent = "MNI x = " + xyz[0] + ", y = " + xyz[1] +
      ", z = " + xyz[2] + " mm";
    this.root.querySelectorAll("input.viewer-mm").forEach(function (el) {
      if (document.activeElement !== el) el.value = xyz[parseInt(el.dataset.axis, 10)];
    });
    var o = this.spec.overlays[this.current], v = this.overlays[this.current];
    var k = nv.volumes.indexOf(v);
    this.q(".viewer-value").textContent = (o && k >= 0) ?
      "≈ " + fmt(loc.values[k].value) + " " + o.unit + " (" + o.name + ")" : "";
    var region = "";
    if (this.labels) {
      var j = nv.volumes.indexOf(this.labels);
      var code = Math.round(loc.values[j].value);
      var names = this.labels.colormapLabel.labels;
      region = code > 0 && code < names.length ? names[code] : "no atlas label";
    }
    this.q(".viewer-region").textContent = region;
  };

  function begin(root) {
    if (root.dataset.state !== "waiting") return;
    root.dataset.state = "loading";
    var viewer = new Viewer(root);
    root.brainlrpViewer = viewer;
    viewer.start().then(function () {
      root.dataset.state = "ready";
    }, function (err) {
      root.dataset.state = "error";
      root.querySelector(".viewer-error").textContent =
        "The viewer could not start (it needs WebGL2): " + err.message;
      console.error(err);
    });
  }

  function startAll() {
    var roots = document.querySelectorAll(".brainlrp-niivue");
    if (typeof niivue === "undefined") {
      roots.forEach(function (r) {
        r.querySelector(".viewer-error").textContent = "NiiVue is missing from the page.";
      });
      return;
    }
    var seen = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (e.isIntersecting) { seen.unobserve(e.target); begin(e.target); }
      });
    }, { rootMargin: "400px" });
    roots.forEach(function (r) { r.dataset.state = "waiting"; seen.observe(r); });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", startAll);
  } else {
    startAll();
  }
})();
