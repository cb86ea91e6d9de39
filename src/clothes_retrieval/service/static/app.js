// The search page: upload a street photo, see its garments boxed, browse their shop items.
// Plain JS, no framework and no build step; it talks only to the server that served it.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("search-form"),
    drop: $("drop"),
    file: $("file"),
    chosen: $("chosen"),
    detect: $("detect"),
    topk: $("topk"),
    again: $("search-again"),
    status: $("status"),
    query: $("query"),
    queryTitle: $("query-title"),
    back: $("back"),
    photo: $("photo"),
    boxes: $("boxes"),
    empty: $("empty"),
    reason: $("reason"),
    wholePhoto: $("whole-photo"),
    garmentsTitle: $("garments-title"),
    garments: $("garments"),
    resultsPane: $("results-pane"),
    resultsTitle: $("results-title"),
    resultsNote: $("results-note"),
    results: $("results"),
    bundle: $("bundle"),
  };

  const COLOURS = ["#e4572e", "#17bebb", "#ffc914", "#76b041", "#a259ff", "#ff6fb5", "#2e86de"];

  let currentFile = null; // the last photo chosen or dropped
  let photoUrl = null; // its object URL (shown while its view is in the history)
  let history = []; // the views shown before the current one (for Back)
  let view = null; // {kind, title, src, items, reason, selected, galleryId}
  let requestSeq = 0; // answers to older requests than the latest are dropped

  // ---- status and footer -------------------------------------------------------------

  function setStatus(text, kind) {
    el.status.textContent = text;
    el.status.className = "status" + (kind ? " " + kind : "");
  }

  function showBundle(b) {
    if (!b) return;
    const parts = [];
    if (b.profile) parts.push("profile " + b.profile);
    if (b.data_version) parts.push("data version " + b.data_version);
    if (b.gallery_items !== undefined && b.gallery_items !== null) {
      parts.push(b.gallery_items + " gallery items");
    }
    if (b.bundle_id) parts.push("bundle " + b.bundle_id);
    el.bundle.textContent = parts.join(" \u00b7 ") || "bundle loaded";
  }

  async function loadHealth() {
    try {
      const r = await fetch("/health", { headers: { Accept: "application/json" } });
      const body = await r.json();
      if (r.ok) showBundle(body);
      else el.bundle.textContent = "The service is not ready: " + errorText(r, body);
    } catch (e) {
      el.bundle.textContent = "The service cannot be reached.";
    }
  }

  function errorText(response, body) {
    if (body && body.error && body.error.message) return body.error.message;
    return "the server answered " + response.status + " " + (response.statusText || "");
  }

  // ---- requests ----------------------------------------------------------------------

  // POST to url; returns the JSON answer, or null after showing why there is none.
  async function post(url, formData, busyText) {
    const seq = ++requestSeq;
    setStatus(busyText, "busy");
    document.body.classList.add("busy");
    try {
      let response;
      try {
        response = await fetch(url, {
          method: "POST",
          body: formData,
          headers: { Accept: "application/json" },
        });
      } catch (e) {
        if (seq === requestSeq) setStatus("The service cannot be reached: " + e.message, "error");
        return null;
      }
      let body = null;
      try {
        body = await response.json();
      } catch (e) {
        body = null;
      }
      if (seq !== requestSeq) return null; // a newer request was sent meanwhile
      if (!response.ok || !body) {
        setStatus("Error: " + errorText(response, body), "error");
        return null;
      }
      showBundle(body.bundle);
      return body;
    } finally {
      if (seq === requestSeq) document.body.classList.remove("busy");
    }
  }

  function topK() {
    const raw = el.topk.value.trim();
    const n = Number(raw);
    if (raw === "" || !Number.isInteger(n) || n < 1) {
      setStatus("Results per garment must be a whole number of at least 1.", "error");
      el.topk.focus();
      return null;
    }
    return n;
  }

  function totalMs(timings) {
    let ms = 0;
    for (const [k, v] of Object.entries(timings || {})) if (k.endsWith("_ms")) ms += v;
    return ms;
  }

  async function searchPhoto(file, detect) {
    const k = topK();
    if (k === null) return;
    const form = new FormData();
    form.append("image", file, file.name || "photo");
    const url = "/search?top_k=" + k + "&detect=" + (detect ? "true" : "false");
    const what = detect ? "Detecting garments and searching\u2026" : "Searching the whole photo\u2026";
    const answer = await post(url, form, what);
    if (!answer) return;
    if (photoUrl) URL.revokeObjectURL(photoUrl);
    photoUrl = URL.createObjectURL(file);
    history = [];
    const n = answer.items.length;
    show({
      kind: "photo",
      title: "Your photo",
      src: photoUrl,
      alt: "Your photo" + (file.name ? " " + file.name : ""),
      items: answer.items,
      reason: answer.reason,
      selected: 0,
      detect: detect,
    });
    if (n === 0) {
      setStatus(answer.reason || "No garment found.", "warn");
    } else {
      setStatus(
        (detect ? "Found " + n + (n === 1 ? " garment" : " garments") : "Searched the whole photo") +
          " in " + Math.round(totalMs(answer.timings)) + " ms.",
        "ok"
      );
    }
  }

  async function searchById(galleryId) {
    const k = topK();
    if (k === null) return;
    const url = "/search/by-id/" + encodeURIComponent(galleryId) + "?top_k=" + k;
    const answer = await post(url, null, "Finding shop items like " + galleryId + "\u2026");
    if (!answer) return;
    if (view) history.push(view);
    show({
      kind: "item",
      title: "Shop item " + galleryId,
      src: "/gallery/" + encodeURIComponent(galleryId) + "/image",
      alt: "Shop photo of gallery item " + galleryId,
      items: answer.items,
      reason: answer.reason,
      selected: 0,
      galleryId: galleryId,
    });
    const n = answer.items.length ? answer.items[0].results.length : 0;
    setStatus("Showing " + n + " shop items like " + galleryId + ".", "ok");
  }

  // ---- rendering ---------------------------------------------------------------------

  function show(v) {
    view = v;
    el.query.hidden = false;
    el.queryTitle.textContent = v.title;
    el.back.hidden = history.length === 0;
    el.boxes.replaceChildren();
    el.photo.alt = v.alt;
    if (el.photo.getAttribute("src") !== v.src) el.photo.src = v.src; // boxes drawn on load
    else if (el.photo.complete && el.photo.naturalWidth) drawBoxes();
    el.empty.hidden = v.items.length > 0;
    el.reason.textContent = v.reason || "No garment found.";
    el.wholePhoto.hidden = v.kind !== "photo";
    el.garmentsTitle.hidden = v.items.length === 0;
    renderGarments();
    renderResults();
  }

  function describe(item) {
    return item.category + " " + item.score.toFixed(2);
  }

  // Fit the photo to the pane (small photos are enlarged, large ones shrunk); the boxes
  // are placed in percent of the photo, so they follow its displayed size.
  function fitPhoto() {
    const w = el.photo.naturalWidth;
    const h = el.photo.naturalHeight;
    if (!w || !h) return;
    const pane = getComputedStyle(el.query);
    const room =
      el.query.clientWidth - parseFloat(pane.paddingLeft) - parseFloat(pane.paddingRight);
    const scale = Math.min(room / w, (window.innerHeight * 0.7) / h, 6);
    el.photo.style.width = Math.max(1, Math.floor(w * scale)) + "px"; // height: auto
  }

  function drawBoxes() {
    if (!view) return;
    const w = el.photo.naturalWidth;
    const h = el.photo.naturalHeight;
    if (!w || !h) return;
    fitPhoto();
    el.boxes.replaceChildren();
    // Overlapping boxes: the smaller one lies on top, so that every box can be clicked.
    const area = (b) => Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]);
    const bySize = view.items.map((_, i) => i);
    bySize.sort((a, b) => area(view.items[b].box) - area(view.items[a].box));
    view.items.forEach((item, i) => {
      const [x1, y1, x2, y2] = item.box;
      const box = document.createElement("button");
      box.type = "button";
      box.className = "box";
      box.dataset.index = String(i);
      const pct = (v, total) => Math.max(0, Math.min(100, (v / total) * 100));
      box.style.left = pct(x1, w) + "%";
      box.style.top = pct(y1, h) + "%";
      box.style.width = pct(x2, w) - pct(x1, w) + "%";
      box.style.height = pct(y2, h) - pct(y1, h) + "%";
      box.style.zIndex = String(1 + bySize.indexOf(i));
      box.style.setProperty("--colour", COLOURS[i % COLOURS.length]);
      box.setAttribute("aria-label", "Garment " + (i + 1) + ": " + describe(item));
      box.setAttribute("aria-pressed", String(i === view.selected));
      if (i === view.selected) box.classList.add("selected");
      // No room above the box (it touches the top of the photo): the label goes inside.
      if ((y1 / h) * el.photo.clientHeight < 20) box.classList.add("label-inside");
      const label = document.createElement("span");
      label.className = "box-label";
      label.textContent = describe(item);
      box.append(label);
      box.addEventListener("click", () => select(i));
      el.boxes.append(box);
    });
  }

  function renderGarments() {
    el.garments.replaceChildren();
    view.items.forEach((item, i) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "garment";
      b.dataset.index = String(i);
      b.style.setProperty("--colour", COLOURS[i % COLOURS.length]);
      b.setAttribute("aria-pressed", String(i === view.selected));
      if (i === view.selected) b.classList.add("selected");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.setAttribute("aria-hidden", "true");
      const text = document.createElement("span");
      text.textContent = (i + 1) + ". " + item.category;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = view.kind === "photo" ? "score " + item.score.toFixed(3) : "";
      b.append(swatch, text, score);
      b.addEventListener("click", () => select(i));
      li.append(b);
      el.garments.append(li);
    });
  }

  function renderResults() {
    el.results.replaceChildren();
    const item = view.items[view.selected];
    el.resultsPane.hidden = !item;
    if (!item) return;
    el.resultsTitle.textContent =
      view.kind === "photo"
        ? "Shop results for garment " + (view.selected + 1) + " (" + item.category + ")"
        : "Shop items like " + view.galleryId;
    el.resultsNote.textContent = item.results.length
      ? "Most similar first. Choose one to see the shop items like it."
      : "The gallery has no items to show.";
    for (const r of item.results) {
      const li = document.createElement("li");
      li.className = "result";
      li.dataset.galleryId = r.gallery_id;
      const b = document.createElement("button");
      b.type = "button";
      b.className = "result-open";
      b.title = "Find shop items like " + r.gallery_id;
      const img = document.createElement("img");
      img.src = r.image_url;
      img.alt = "Shop item " + r.gallery_id + ": " + r.category;
      img.className = "thumb";
      const meta = document.createElement("span");
      meta.className = "meta";
      const sim = document.createElement("span");
      sim.className = "sim-line";
      const simLabel = document.createElement("span");
      simLabel.className = "sim-label";
      simLabel.textContent = "similarity ";
      const simValue = document.createElement("span");
      simValue.className = "similarity";
      simValue.textContent = r.similarity.toFixed(3);
      sim.append(simLabel, simValue);
      const cat = document.createElement("span");
      cat.className = "category";
      cat.textContent = r.category;
      const gid = document.createElement("span");
      gid.className = "gallery-id";
      gid.textContent = r.gallery_id;
      meta.append(sim, cat, gid);
      b.append(img, meta);
      b.addEventListener("click", () => searchById(r.gallery_id));
      li.append(b);
      el.results.append(li);
    }
  }

  function select(i) {
    if (!view || i === view.selected) return;
    view.selected = i;
    for (const node of document.querySelectorAll(".box, .garment")) {
      const on = Number(node.dataset.index) === i;
      node.classList.toggle("selected", on);
      node.setAttribute("aria-pressed", String(on));
    }
    renderResults();
  }

  // ---- events ------------------------------------------------------------------------

  function choose(file) {
    if (!file) return;
    currentFile = file;
    el.chosen.textContent = "Photo: " + (file.name || "dropped photo");
    el.again.disabled = false;
    searchPhoto(file, el.detect.checked);
  }

  el.photo.addEventListener("load", () => drawBoxes());
  window.addEventListener("resize", () => fitPhoto());
  el.photo.addEventListener("error", () => {
    if (view) setStatus("The browser cannot show this photo; its results are below.", "warn");
  });

  el.file.addEventListener("change", () => {
    const file = el.file.files[0];
    // Cleared, so that choosing the same photo again (say with other options) searches again.
    el.file.value = "";
    choose(file);
  });

  el.form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (currentFile) searchPhoto(currentFile, el.detect.checked);
  });

  el.wholePhoto.addEventListener("click", () => {
    if (currentFile) searchPhoto(currentFile, false);
  });

  el.back.addEventListener("click", () => {
    const previous = history.pop();
    if (previous) {
      show(previous);
      setStatus("Back to " + previous.title.toLowerCase() + ".", "ok");
    }
  });

  for (const name of ["dragenter", "dragover"]) {
    el.drop.addEventListener(name, (e) => {
      e.preventDefault();
      el.drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "dragend"]) {
    el.drop.addEventListener(name, () => el.drop.classList.remove("over"));
  }
  el.drop.addEventListener("drop", (e) => {
    e.preventDefault();
    el.drop.classList.remove("over");
    const files = e.dataTransfer && e.dataTransfer.files;
    if (!files || files.length === 0) {
      setStatus("Drop a photo file (nothing usable was dropped).", "error");
      return;
    }
    choose(files[0]);
  });
  // A photo dropped beside the zone must not make the browser leave the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  loadHealth();
})();
