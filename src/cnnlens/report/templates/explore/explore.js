/* cnnlens report explorer (issue #21). Plain JavaScript, no library, no network.
 *
 * Reads window.CNNLENS_EXPLORE (explore/data.js, written by cnnlens.report.explore from the run's
 * records). User strings (class names, ids, method names) reach the DOM only through textContent.
 * The view lives in the URL hash (docs/report.md lists the keys); every control writes the hash and
 * the page renders from it, so a link reproduces the view and the back button steps back.
 *
 * Display rule: t = m / S (S = the map's scale, or the larger of two in "A vs B"); signed display
 * colours LUT[round((t + 1) * 127.5)], absolute display LUT[round(|t| * 255)]; the pixel drawn is
 * round((1 - a) * image + a * colour) at opacity a.
 */
(function () {
  "use strict";
  var D = window.CNNLENS_EXPLORE;
  var app = document.getElementById("explore-app");
  if (!D || !app) { return; }
  var T0 = performance.now();
  var times = { interactive: null, renders: [] };
  window.CNNLENS_EXPLORE_TIMES = times;

  // ---- helpers ------------------------------------------------------------------------------
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function option(value, text, selected) {
    var o = el("option", null, text);
    o.value = String(value);
    if (selected) { o.selected = true; }
    return o;
  }
  function clear(e) { while (e.firstChild) { e.removeChild(e.firstChild); } return e; }
  function cls(k) { return D.classes[k]; }
  function pct(v) { return (v === null || v === undefined) ? "—" : (100 * v).toFixed(1) + "%"; }
  function num(v) { return (v === null || v === undefined) ? "not computed" : Number(v).toFixed(3); }

  function loadAtlas(uri) {
    return new Promise(function (resolve, reject) {
      var img = new Image();
      img.onload = function () {
        var c = document.createElement("canvas");
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        var ctx = c.getContext("2d");
        ctx.drawImage(img, 0, 0);
        resolve({ w: c.width, h: c.height, data: ctx.getImageData(0, 0, c.width, c.height).data });
      };
      img.onerror = function () { reject(new Error("explorer: an atlas did not decode")); };
      img.src = uri;
    });
  }

  // ---- the data ------------------------------------------------------------------------------
  var slotByIndex = {};
  D.images.forEach(function (im, k) { slotByIndex[im.index] = k; });
  var entryOf = {};   // "slot,target" -> entry
  var targetsOf = {}; // slot -> [targets]
  D.entries.forEach(function (st, e) {
    entryOf[st[0] + "," + st[1]] = e;
    (targetsOf[st[0]] = targetsOf[st[0]] || []).push(st[1]);
  });
  var methodNames = Object.keys(D.methods);
  var rows = D.rows ? D.rows.index.map(function (idx, i) {
    return { index: idx, id: D.rows.id[i], t: D.rows.true[i], p: D.rows.pred[i],
             pp: D.rows.p_pred[i], pt: D.rows.p_true[i] };
  }) : D.images.map(function (im) {
    return { index: im.index, id: im.id, t: im.true, p: im.pred, pp: im.confidence,
             pt: Math.exp(-im.loss) };
  });
  var atlases = { pixels: null, maps: {} };

  function pixelAt(slot, x, y) {  // [r, g, b] of the stored image
    var P = D.pixels, A = atlases.pixels;
    var col = slot % P.cols, row = Math.floor(slot / P.cols);
    var o = 4 * ((row * P.h + y) * A.w + col * P.w + x);
    return [A.data[o], A.data[o + 1], A.data[o + 2]];
  }
  function mapTile(method, entry) {  // Float64Array [h * w] of dequantized values, and the scale
    var M = D.methods[method], A = atlases.maps[method];
    var col = entry % M.cols, row = Math.floor(entry / M.cols), s = M.scale[entry];
    var out = new Float64Array(M.h * M.w);
    for (var y = 0; y < M.h; y++) {
      for (var x = 0; x < M.w; x++) {
        var q = A.data[4 * ((row * M.h + y) * A.w + col * M.w + x)];
        out[y * M.w + x] = (q / 127.5 - 1) * s;
      }
    }
    return { m: out, scale: s, h: M.h, w: M.w };
  }

  // ---- the view state (the URL hash) ---------------------------------------------------------
  function state() {
    var p = new URLSearchParams(location.hash.replace(/^#/, ""));
    var s = {};
    p.forEach(function (v, k) { s[k] = v; });
    if (!s.view) { s.view = s.image !== undefined ? "detail" : "gallery"; }
    return s;
  }
  function go(changes, replace) {
    var s = state();
    Object.keys(changes).forEach(function (k) {
      if (changes[k] === null || changes[k] === undefined || changes[k] === "") { delete s[k]; }
      else { s[k] = String(changes[k]); }
    });
    var h = "#" + new URLSearchParams(s).toString();
    // pushState (not location.hash): the view renders at once, and Back (popstate) steps back
    if (replace) { history.replaceState(null, "", h); } else if (h !== location.hash) { history.pushState(null, "", h); }
    render();
  }
  function intOr(v, d) { var n = parseInt(v, 10); return isNaN(n) ? d : n; }

  // ---- gallery -------------------------------------------------------------------------------
  function filtered(s) {
    var t = intOr(s.true, -1), p = intOr(s.pred, -1), c = s.correct || "all";
    var out = rows.filter(function (r) {
      return (t < 0 || r.t === t) && (p < 0 || r.p === p) &&
        (c === "all" || (c === "correct") === (r.t === r.p));
    });
    var sort = s.sort || "index";
    out.sort(function (a, b) {
      if (sort === "confidence") { return (b.pp - a.pp) || (a.index - b.index); }
      if (sort === "loss") { return (a.pt - b.pt) || (a.index - b.index); }
      return a.index - b.index;
    });
    return out;
  }

  var LIMIT = 400;
  function drawImage(canvas, slot) {
    var P = D.pixels;
    canvas.width = P.w; canvas.height = P.h;
    var ctx = canvas.getContext("2d"), img = ctx.createImageData(P.w, P.h);
    for (var y = 0; y < P.h; y++) {
      for (var x = 0; x < P.w; x++) {
        var v = pixelAt(slot, x, y), o = 4 * (y * P.w + x);
        img.data[o] = v[0]; img.data[o + 1] = v[1]; img.data[o + 2] = v[2]; img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
  }

  function renderGallery(s) {
    var list = filtered(s);
    var withMaps = list.filter(function (r) { return slotByIndex[r.index] !== undefined; });
    var without = list.filter(function (r) { return slotByIndex[r.index] === undefined; });
    var t = intOr(s.true, -1), p = intOr(s.pred, -1);
    var what = (t >= 0 ? "true " + cls(t) : "any true class") + ", " +
      (p >= 0 ? "predicted " + cls(p) : "any prediction") +
      (s.correct && s.correct !== "all" ? ", " + s.correct + " only" : "");
    ui.count.textContent = list.length + " " + D.split + " image(s) with " + what + "; " +
      withMaps.length + " with maps" + (without.length ? ", " + without.length + " without" : "") + ".";
    clear(ui.tiles);
    withMaps.slice(0, LIMIT).forEach(function (r) {
      var tile = el("button", "ex-tile" + (r.t === r.p ? "" : " ex-wrong"));
      tile.type = "button";
      tile.setAttribute("data-index", String(r.index));
      var c = el("canvas");
      drawImage(c, slotByIndex[r.index]);
      tile.appendChild(c);
      tile.appendChild(el("span", "ex-cap", "#" + r.index));
      tile.appendChild(el("span", "ex-cap", "true " + cls(r.t)));
      tile.appendChild(el("span", "ex-cap", "pred " + cls(r.p) + " (" + pct(r.pp) + ")"));
      tile.addEventListener("click", function () { go({ view: "detail", image: r.index, target: null, vs: null }); });
      ui.tiles.appendChild(tile);
    });
    ui.more.textContent = withMaps.length > LIMIT ? "The first " + LIMIT + " of " + withMaps.length +
      " images with maps are shown; narrow the filter to see the rest." : "";
    clear(ui.nomaps);
    ui.nomapsBox.hidden = without.length === 0;
    ui.nomapsNote.textContent = without.length + " image(s) here have no maps computed (the explorer " +
      "chose others); `" + D.maker + "` computes maps for more images (mistakes, correct ones per class).";
    without.slice(0, 5 * LIMIT).forEach(function (r) {
      var tr = el("tr");
      tr.setAttribute("data-index", String(r.index));
      [String(r.index), r.id, cls(r.t), cls(r.p), pct(r.pp)].forEach(function (v, i) {
        tr.appendChild(el("td", i > 1 && i < 4 ? "l" : null, v));
      });
      ui.nomaps.appendChild(tr);
    });
    if (without.length > 5 * LIMIT) {
      var tr = el("tr"), td = el("td", "l", "… and " + (without.length - 5 * LIMIT) +
        " more; narrow the filter to list them.");
      td.colSpan = 5; tr.appendChild(td); ui.nomaps.appendChild(tr);
    }
    [["true", ui.fTrue], ["pred", ui.fPred]].forEach(function (kv) {
      kv[1].value = String(intOr(s[kv[0]], -1));
    });
    ui.fCorrect.value = s.correct || "all";
    ui.fSort.value = s.sort || "index";
    var cells = ui.confusion.querySelectorAll("button[data-true]");
    Array.prototype.forEach.call(cells, function (b) {
      var on = +b.getAttribute("data-true") === t && +b.getAttribute("data-pred") === p;
      b.classList.toggle("ex-on", on);
    });
  }

  // ---- detail --------------------------------------------------------------------------------
  function lut(name) { return D.colormaps[name] || D.colormaps.viridis; }

  function drawMap(canvas, slot, method, target, scaleFor, s) {
    var P = D.pixels, e = entryOf[slot + "," + target];
    canvas.width = P.w; canvas.height = P.h;
    var ctx = canvas.getContext("2d"), img = ctx.createImageData(P.w, P.h);
    var a = Math.max(0, Math.min(1, parseFloat(s.opacity === undefined ? "0.7" : s.opacity)));
    var signed = mode(s, method) === "signed", L = lut(cmapName(s, method));
    var tile = e === undefined ? null : mapTile(method, e);
    var S = scaleFor !== undefined ? scaleFor : (tile ? tile.scale : 0);
    for (var y = 0; y < P.h; y++) {
      for (var x = 0; x < P.w; x++) {
        var v = pixelAt(slot, x, y), o = 4 * (y * P.w + x), c = v, w = tile ? a : 0;
        if (tile) {
          var my = Math.floor(y * tile.h / P.h), mx = Math.floor(x * tile.w / P.w);
          var t = S > 0 ? tile.m[my * tile.w + mx] / S : 0;
          var k = signed ? Math.round((t + 1) * 127.5) : Math.round(Math.abs(t) * 255);
          c = L[Math.max(0, Math.min(255, k))];
        }
        img.data[o] = Math.round((1 - w) * v[0] + w * c[0]);
        img.data[o + 1] = Math.round((1 - w) * v[1] + w * c[1]);
        img.data[o + 2] = Math.round((1 - w) * v[2] + w * c[2]);
        img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    return tile !== null;
  }
  function mode(s, method) {
    if (s.mode === "signed" || s.mode === "absolute") { return s.mode; }
    return D.methods[method].signed ? "signed" : "absolute";
  }
  function cmapName(s, method) {
    if (s.cmap && D.colormaps[s.cmap]) { return s.cmap; }
    return mode(s, method) === "signed" ? "RdBu_r" : "viridis";
  }

  function currentSlot(s) {
    var k = intOr(s.image, NaN);
    return slotByIndex[k];
  }

  function renderDetail(s) {
    var slot = currentSlot(s);
    clear(ui.dTitle); clear(ui.dBody);
    if (slot === undefined) {
      var r = rows.filter(function (x) { return String(x.index) === String(s.image); })[0];
      ui.dTitle.textContent = "Image #" + s.image;
      ui.dBody.appendChild(el("p", "ex-note", (r ? "true " + cls(r.t) + ", predicted " + cls(r.p) + ": " : "") +
        "its maps were not computed; `" + D.maker + "` computes maps for more images."));
      return;
    }
    var im = D.images[slot];
    var method = D.methods[s.method] ? s.method : methodNames[0];
    var targets = targetsOf[slot] || [];
    var target = intOr(s.target, im.pred);
    if (targets.indexOf(target) < 0) { target = targets.indexOf(im.pred) >= 0 ? im.pred : targets[0]; }
    var vs = intOr(s.vs, -1);
    if (targets.indexOf(vs) < 0) { vs = -1; }
    ui.dTitle.textContent = "Image #" + im.index + " (id " + im.id + "): true " + cls(im.true) +
      ", predicted " + cls(im.pred) + " (" + pct(im.confidence) + "), loss " + Number(im.loss).toFixed(3) +
      " nats, chosen as " + im.why;
    // controls
    fill(ui.cMethod, methodNames.map(function (m) { return [m, m]; }), method);
    var tOpts = targets.map(function (k) {
      return [k, cls(k) + (k === im.pred ? " (predicted)" : "") + (k === im.true ? " (true)" : "")];
    });
    fill(ui.cTarget, tOpts, target);
    fill(ui.cVs, [[-1, "none"]].concat(tOpts), vs);
    ui.cOpacity.value = s.opacity === undefined ? "0.7" : s.opacity;
    fill(ui.cMode, [["signed", "signed (diverging)"], ["absolute", "absolute |m|"]], mode(s, method));
    fill(ui.cCmap, Object.keys(D.colormaps).map(function (n) { return [n, n]; }), cmapName(s, method));
    // the main canvases: A (and B on a shared scale)
    var eA = entryOf[slot + "," + target], eB = vs >= 0 ? entryOf[slot + "," + vs] : undefined;
    var shared = eB !== undefined ? Math.max(D.methods[method].scale[eA], D.methods[method].scale[eB]) : undefined;
    var row = el("div", "ex-main-row");
    var base = el("figure", "ex-fig"), bc = el("canvas", "ex-big");
    bc.id = "ex-image"; drawImage(bc, slot);
    base.appendChild(bc); base.appendChild(el("figcaption", null, "image"));
    row.appendChild(base);
    [[target, "ex-main"], [vs, "ex-main-b"]].forEach(function (tk) {
      if (tk[0] < 0) { return; }
      var f = el("figure", "ex-fig"), c = el("canvas", "ex-big");
      c.id = tk[1];
      drawMap(c, slot, method, tk[0], shared, s);
      f.appendChild(c);
      f.appendChild(el("figcaption", null, method + " for " + cls(tk[0]) +
        (shared !== undefined ? " (shared scale " + shared.toPrecision(3) + ")" : "")));
      row.appendChild(f);
      hookLime(c, im, tk[0]);
    });
    ui.dBody.appendChild(row);
    ui.dBody.appendChild(ui.limeInfo);
    ui.limeInfo.textContent = limeFor(im) ? "LIME: hover the map to read each superpixel's weight." : "";
    // every method for the target
    var grid = el("div", "ex-methods");
    methodNames.forEach(function (m) {
      var f = el("button", "ex-thumb" + (m === method ? " ex-on" : "")), c = el("canvas");
      f.type = "button"; f.setAttribute("data-method", m);
      drawMap(c, slot, m, target, undefined, s);
      f.appendChild(c); f.appendChild(el("span", "ex-cap", m));
      f.addEventListener("click", function () { go({ method: m }); });
      grid.appendChild(f);
    });
    ui.dBody.appendChild(el("h4", null, "Every method, for " + cls(target)));
    ui.dBody.appendChild(grid);
    ui.dBody.appendChild(trustPanel(im, method));
  }

  function fill(select, opts, value) {
    clear(select);
    opts.forEach(function (o) { select.appendChild(option(o[0], o[1], String(o[0]) === String(value))); });
  }

  function limeFor(im) {
    var L = D.lime;
    if (!L) { return null; }
    var n = L.indices.indexOf(im.index);
    return n < 0 ? null : n;
  }
  function hookLime(canvas, im, target) {
    var n = limeFor(im);
    if (n === null) { return; }
    canvas.addEventListener("mousemove", function (ev) {
      var L = D.lime, h = L.shape[0], w = L.shape[1];
      var x = Math.min(w - 1, Math.floor(ev.offsetX * w / canvas.clientWidth));
      var y = Math.min(h - 1, Math.floor(ev.offsetY * h / canvas.clientHeight));
      var seg = L.segments[n][y * w + x], wt = L.weights[n][seg];
      ui.limeInfo.textContent = "LIME superpixel " + seg + ": weight " + num(wt) + " for class " +
        cls(L.targets[n]) + " (at x " + x + ", y " + y + ")";
    });
  }

  function trustPanel(im, method) {
    var box = el("div", "ex-trust");
    box.id = "ex-trust";
    box.appendChild(el("h4", null, "Trust numbers of " + method + " on this image"));
    var T = D.trust, p = T ? T.indices.indexOf(im.index) : -1, M = T && T.methods[method];
    if (p < 0 || !M) {
      box.appendChild(el("p", "ex-note", "Not computed for this image (the trust stage scores its own " +
        "sample of images; `cnnlens trust RUN` makes trust/scores.json)."));
      return box;
    }
    var tab = el("table"), any = false;
    Object.keys(M.scores).forEach(function (k) {
      var tr = el("tr");
      tr.appendChild(el("td", "l", k));
      tr.appendChild(el("td", null, num(M.scores[k][p])));
      tab.appendChild(tr); any = true;
    });
    if (any) { box.appendChild(tab); }
    var curves = M.curves || {};
    ["deletion", "insertion"].forEach(function (k) {
      var c = curves[k] && curves[k][p];
      if (!c || !c.length) { box.appendChild(el("p", "ex-note", k + " curve: not computed for this image.")); return; }
      box.appendChild(svgCurve(c, k));
    });
    return box;
  }
  function svgCurve(ys, name) {
    var NS = "http://www.w3.org/2000/svg", W = 220, H = 110, pad = 22;
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("class", "ex-curve");
    var pts = ys.map(function (v, i) {
      var x = pad + (W - pad - 4) * i / Math.max(1, ys.length - 1);
      var y = H - pad - (H - pad - 6) * Math.max(0, Math.min(1, v === null ? 0 : v));
      return x.toFixed(1) + "," + y.toFixed(1);
    }).join(" ");
    var axis = document.createElementNS(NS, "polyline");
    axis.setAttribute("points", pad + ",6 " + pad + "," + (H - pad) + " " + (W - 4) + "," + (H - pad));
    axis.setAttribute("class", "ex-axis"); svg.appendChild(axis);
    var line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", pts); line.setAttribute("class", "ex-line"); svg.appendChild(line);
    var label = document.createElementNS(NS, "text");
    label.setAttribute("x", pad + 4); label.setAttribute("y", 14);
    label.textContent = name + ": p(true) vs fraction of pixels " + (name === "deletion" ? "deleted" : "inserted");
    svg.appendChild(label);
    return svg;
  }

  // ---- the page ------------------------------------------------------------------------------
  var ui = {};
  function build() {
    clear(app);
    var intro = el("p", "ex-note", "Click a confusion-matrix cell or use the filters to list images; click " +
      "an image for its maps. The view is in the address (a link reproduces it; Back steps back); " +
      "left and right arrows go to the previous and next image.");
    app.appendChild(intro);
    var top = el("div", "ex-top");
    // confusion matrix
    ui.confusion = el("div", "ex-confusion");
    ui.confusion.id = "ex-confusion";
    if (D.rows && D.rows.confusion) {
      var tab = el("table"), head = el("tr");
      head.appendChild(el("th", "l", "true \\ predicted"));
      D.classes.forEach(function (c) { head.appendChild(el("th", null, c)); });
      tab.appendChild(head);
      D.rows.confusion.forEach(function (r, t) {
        var tr = el("tr");
        tr.appendChild(el("th", "l", cls(t)));
        r.forEach(function (n, p) {
          var td = el("td"), b = el("button", t === p ? "ex-diag" : (n ? "ex-off" : "ex-zero"), n);
          b.type = "button";
          b.setAttribute("data-true", String(t)); b.setAttribute("data-pred", String(p));
          b.title = "true " + cls(t) + ", predicted " + cls(p) + ": " + n + " image(s)";
          b.addEventListener("click", function () {
            go({ view: "gallery", "true": t, pred: p, correct: null, image: null });
          });
          td.appendChild(b); tr.appendChild(td);
        });
        tab.appendChild(tr);
      });
      ui.confusion.appendChild(el("p", "ex-note", "Confusion matrix (" + D.rows.confusion_file +
        "): click a cell to list its images."));
      ui.confusion.appendChild(tab);
    } else {
      ui.confusion.appendChild(el("p", "ex-note", D.rows_note || "No evaluation to list."));
    }
    top.appendChild(ui.confusion);
    app.appendChild(top);
    // gallery
    ui.gallery = el("div", "ex-gallery"); ui.gallery.id = "ex-gallery";
    var f = el("div", "ex-controls");
    function labeled(text, control) {
      var l = el("label", null, text + " "); l.appendChild(control); f.appendChild(l); return control;
    }
    var classOpts = [[-1, "any"]].concat(D.classes.map(function (c, k) { return [k, c]; }));
    ui.fTrue = labeled("true class", el("select")); ui.fTrue.id = "ex-f-true"; fill(ui.fTrue, classOpts, -1);
    ui.fPred = labeled("predicted", el("select")); ui.fPred.id = "ex-f-pred"; fill(ui.fPred, classOpts, -1);
    ui.fCorrect = labeled("show", el("select")); ui.fCorrect.id = "ex-f-correct";
    fill(ui.fCorrect, [["all", "all"], ["correct", "correct only"], ["wrong", "wrong only"]], "all");
    ui.fSort = labeled("sort by", el("select")); ui.fSort.id = "ex-f-sort";
    fill(ui.fSort, [["index", "dataset index"], ["confidence", "confidence (highest first)"],
      ["loss", "loss (highest first)"]], "index");
    ui.fTrue.addEventListener("change", function () { go({ "true": ui.fTrue.value === "-1" ? null : ui.fTrue.value }); });
    ui.fPred.addEventListener("change", function () { go({ pred: ui.fPred.value === "-1" ? null : ui.fPred.value }); });
    ui.fCorrect.addEventListener("change", function () { go({ correct: ui.fCorrect.value === "all" ? null : ui.fCorrect.value }); });
    ui.fSort.addEventListener("change", function () { go({ sort: ui.fSort.value === "index" ? null : ui.fSort.value }); });
    ui.gallery.appendChild(f);
    ui.count = el("p", "ex-count"); ui.count.id = "ex-count"; ui.gallery.appendChild(ui.count);
    ui.tiles = el("div", "ex-tiles"); ui.tiles.id = "ex-tiles"; ui.gallery.appendChild(ui.tiles);
    ui.more = el("p", "ex-note"); ui.gallery.appendChild(ui.more);
    ui.nomapsBox = el("details", "ex-nomaps"); ui.nomapsBox.open = true;
    ui.nomapsBox.appendChild(el("summary", null, "Images without maps"));
    ui.nomapsNote = el("p", "ex-note"); ui.nomapsBox.appendChild(ui.nomapsNote);
    var nt = el("table"), nh = el("tr");
    ["index", "id", "true", "predicted", "confidence"].forEach(function (h) { nh.appendChild(el("th", null, h)); });
    ui.nomaps = el("tbody"); ui.nomaps.id = "ex-nomaps";
    var thead = el("thead"); thead.appendChild(nh); nt.appendChild(thead); nt.appendChild(ui.nomaps);
    ui.nomapsBox.appendChild(nt);
    ui.gallery.appendChild(ui.nomapsBox);
    app.appendChild(ui.gallery);
    // detail
    ui.detail = el("div", "ex-detail"); ui.detail.id = "ex-detail";
    var nav = el("div", "ex-controls");
    var back = el("button", null, "← gallery"); back.type = "button"; back.id = "ex-back";
    back.addEventListener("click", function () { go({ view: "gallery" }); });
    var prev = el("button", null, "‹ previous"); prev.type = "button"; prev.id = "ex-prev";
    prev.addEventListener("click", function () { step(-1); });
    var next = el("button", null, "next ›"); next.type = "button"; next.id = "ex-next";
    next.addEventListener("click", function () { step(1); });
    [back, prev, next].forEach(function (b) { nav.appendChild(b); });
    ui.detail.appendChild(nav);
    ui.dTitle = el("h3"); ui.dTitle.id = "ex-title"; ui.detail.appendChild(ui.dTitle);
    var c = el("div", "ex-controls"); f = c;
    ui.cMethod = labeled("method", el("select")); ui.cMethod.id = "ex-method";
    ui.cTarget = labeled("class (A)", el("select")); ui.cTarget.id = "ex-target";
    ui.cVs = labeled("vs class (B)", el("select")); ui.cVs.id = "ex-vs";
    ui.cOpacity = labeled("opacity", el("input")); ui.cOpacity.id = "ex-opacity";
    ui.cOpacity.type = "range"; ui.cOpacity.min = "0"; ui.cOpacity.max = "1"; ui.cOpacity.step = "0.05";
    ui.cMode = labeled("display", el("select")); ui.cMode.id = "ex-mode";
    ui.cCmap = labeled("colormap", el("select")); ui.cCmap.id = "ex-cmap";
    ui.cMethod.addEventListener("change", function () { go({ method: ui.cMethod.value }); });
    ui.cTarget.addEventListener("change", function () { go({ target: ui.cTarget.value }); });
    ui.cVs.addEventListener("change", function () { go({ vs: ui.cVs.value === "-1" ? null : ui.cVs.value }); });
    ui.cOpacity.addEventListener("change", function () { go({ opacity: ui.cOpacity.value }, true); });
    ui.cMode.addEventListener("change", function () { go({ mode: ui.cMode.value }); });
    ui.cCmap.addEventListener("change", function () { go({ cmap: ui.cCmap.value }); });
    ui.detail.appendChild(c);
    ui.dBody = el("div"); ui.detail.appendChild(ui.dBody);
    ui.limeInfo = el("p", "ex-note"); ui.limeInfo.id = "ex-lime";
    app.appendChild(ui.detail);
  }

  function step(d) {
    var s = state(), list = filtered(s).filter(function (r) { return slotByIndex[r.index] !== undefined; });
    if (!list.length || list.every(function (r) { return String(r.index) !== s.image; })) {
      list = D.images.map(function (im) { return { index: im.index }; });
    }
    var at = -1;
    list.forEach(function (r, i) { if (String(r.index) === s.image) { at = i; } });
    var k = Math.max(0, Math.min(list.length - 1, at + d));
    if (list[k] && String(list[k].index) !== s.image) { go({ view: "detail", image: list[k].index, target: null, vs: null }); }
  }

  var rendered = null;
  function render() {
    var t = performance.now(), s = state();
    rendered = location.hash;
    var detail = s.view === "detail";
    ui.gallery.hidden = detail; ui.confusion.hidden = detail; ui.detail.hidden = !detail;
    if (detail) { renderDetail(s); } else { renderGallery(s); }
    app.setAttribute("data-view", detail ? "detail" : "gallery");
    times.renders.push(performance.now() - t);
  }

  document.addEventListener("keydown", function (ev) {
    if (state().view !== "detail" || ev.altKey || ev.ctrlKey || ev.metaKey) { return; }
    var tag = (ev.target && ev.target.tagName) || "";
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { return; }
    if (ev.key === "ArrowLeft") { step(-1); ev.preventDefault(); }
    if (ev.key === "ArrowRight") { step(1); ev.preventDefault(); }
  });
  function rerender() { if (ui.gallery && location.hash !== rendered) { render(); } }
  window.addEventListener("popstate", rerender);    // Back / Forward
  window.addEventListener("hashchange", rerender);  // a hash typed or a link followed

  var jobs = [loadAtlas(D.pixels.atlas).then(function (a) { atlases.pixels = a; })];
  methodNames.forEach(function (m) {
    jobs.push(loadAtlas(D.methods[m].atlas).then(function (a) { atlases.maps[m] = a; }));
  });
  Promise.all(jobs).then(function () {
    build();
    app.hidden = false;
    render();
    times.interactive = performance.now();
    times.start = T0;
    app.setAttribute("data-ready", "1");
  }).catch(function (err) {
    app.hidden = false;
    app.textContent = String(err && err.message || err);
    console.error(err);
  });
})();
