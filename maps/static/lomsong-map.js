/* lomsong maps: popups drawn on demand from the columns a page embeds once.
 * Inlined into every map page after Leaflet. Labels and colours come from the page's data (D),
 * so that Python holds the only copy of every text; durations are computed here, at the time a
 * popup opens, so that a cached page never shows a stale "down for". */
var lomsong = (function () {
  "use strict";
  var ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  var clock = new Intl.DateTimeFormat("vi-VN", {
    timeZone: "Asia/Ho_Chi_Minh", hour: "2-digit", minute: "2-digit", day: "2-digit",
    month: "2-digit", year: "numeric", hour12: false
  });

  function esc(v) { return String(v).replace(/[&<>"']/g, function (c) { return ESC[c]; }); }
  function both(pair) { return esc(pair[0]) + " / " + esc(pair[1]); }
  function num(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString("vi-VN"); }
  function when(epoch) { return epoch === null || epoch === undefined ? "—" : esc(clock.format(new Date(epoch * 1000))); }
  // a length of time as [Vietnamese, English]; under a minute is null
  function spans(seconds) {
    var m = Math.max(0, Math.floor(seconds / 60));
    if (m === 0) return null;
    var d = Math.floor(m / 1440), h = Math.floor((m % 1440) / 60), mm = m % 60;
    var vi = [], en = [];
    if (d) { vi.push(d + " ngày"); en.push(d + " d"); }
    if (h) { vi.push(h + " giờ"); en.push(h + " h"); }
    if (!d) { vi.push(mm + " phút"); en.push(mm + " min"); }
    return [vi.join(" "), en.join(" ")];
  }
  function duration(seconds) {
    var s = spans(seconds);
    return s === null ? "dưới 1 phút / under a minute" : s[0] + " / " + s[1];
  }
  function ago(epoch) { return duration(Date.now() / 1000 - epoch); }
  // "5 phút trước / 5 min ago", each language with its own word order
  function agoText(epoch) {
    var s = spans(Date.now() / 1000 - epoch);
    return s === null ? "vừa xong / just now" : s[0] + " trước / " + s[1] + " ago";
  }
  function row(label, value) { return "<tr><th>" + both(label) + "</th><td>" + value + "</td></tr>"; }
  function dot(colour) { return '<span class="ls-dot" style="background:' + esc(colour) + '"></span>'; }
  function open(kind, id) { return '<div class="ls-popup" data-kind="' + kind + '" data-id="' + esc(id) + '">'; }
  function status(D, code) { return dot(D.colours.status[code]) + both(D.text.status[code]); }
  function signal(D, i, j) {
    var v = D.H.rsrp[i][j];
    if (v === null) return "—";
    return esc(v) + " dBm (" + both(D.H.measured[i][j] ? D.text.measured : D.text.predicted) + ")";
  }
  function sector(D, k) {
    if (k < 0) return "—";
    var T = D.T;
    var out = esc(D.S.id[T.site[k]]) + " · " + esc(T.cell[k]) + " · " + esc(T.radio[k].toUpperCase()) +
      " " + esc(T.band[k]) + " MHz";
    if (!T.on[k]) out += " · " + both(D.text.site_down);
    return out;
  }

  function hamlet(D, i, op) {
    var H = D.H, t = D.text.fields;
    var html = open("hamlet", H.id[i]) + "<h4>" + esc(H.name[i]) + "</h4>";
    if (D.synthetic.hamlets) html += '<div class="ls-note">' + both(D.text.synthetic_row) + "</div>";
    html += "<table>";
    html += row(t.commune, esc(D.communes[H.commune[i]] || H.commune[i]) + " (" + esc(H.commune[i]) + ")");
    html += row(t.population, num(H.pop[i]));
    html += row(t.power, both(H.power[i] ? D.text.yes : D.text.no));
    if (op < 0) {
      var b = H.best[i];
      html += row(t.status, status(D, H.overall[i]));
      html += row(t.best, b < 0 ? "—" : esc(D.ops[b].name) + ", " + signal(D, i, b));
      html += row(t.serving, b < 0 ? "—" : sector(D, H.serving[i][b]));
    } else {
      html += row(t.operator, esc(D.ops[op].name));
      html += row(t.status, status(D, H.status[i][op]));
      html += row(t.signal, signal(D, i, op));
      html += row(t.serving, sector(D, H.serving[i][op]));
    }
    html += '</table><table class="ls-ops">';
    var here = op < 0 ? H.best[i] : op;
    for (var j = 0; j < H.status[i].length; j++) {
      var v = H.rsrp[i][j];
      html += "<tr" + (j === here ? ' class="ls-here"' : "") + "><td>" + esc(D.ops[j].name) + "</td><td>" +
        status(D, H.status[i][j]) + "</td><td>" + (v === null ? "—" : esc(v) + " dBm") + "</td></tr>";
    }
    return html + "</table></div>";
  }

  function site(D, s) {
    var t = D.text.fields, T = D.T, sectors = [];
    for (var k = 0; k < T.site.length; k++) if (T.site[k] === s) sectors.push(k);
    var html = open("site", D.S.id[s]) + "<h4>" + esc(D.S.id[s]) + "</h4>";
    if (D.synthetic.sites) html += '<div class="ls-note">' + both(D.text.synthetic_row) + "</div>";
    html += "<table>" + row(t.operator, esc(D.ops[D.S.op[s]].name)) + "</table><table class=\"ls-ops\">";
    html += "<tr><th>" + both(t.cell) + "</th><th>" + both(t.radio) + "</th><th>" + both(t.azimuth) + "</th><th></th></tr>";
    sectors.forEach(function (k) {
      html += "<tr><td>" + esc(T.cell[k]) + "</td><td>" + esc(T.radio[k].toUpperCase()) + " " + esc(T.band[k]) +
        " MHz</td><td>" + (T.az[k] === null ? both(D.text.omni) : esc(T.az[k]) + "°") + "</td><td>" +
        both(T.on[k] ? D.text.site_up : D.text.site_down) + "</td></tr>";
    });
    return html + "</table></div>";
  }

  function probe(D, p) {
    var P = D.P, t = D.text.fields;
    var html = open("probe", P.id[p]) + "<h4>" + esc(P.id[p]) + (P.label[p] ? " — " + esc(P.label[p]) : "") + "</h4><table>";
    html += row(t.commune, esc(P.commune[p]));
    var state = P.state[p];
    var text = dot(D.colours.probe[state]) + both(D.text.probe[state]);
    if (P.since[p] !== null && state !== "up") {
      text += " — " + ago(P.since[p]) + " (" + both(D.text.from) + " " + when(P.since[p]) + ")";
    }
    html += row(t.status, text);
    html += row(t.last_seen, P.seen[p] === null ? "—" : when(P.seen[p]) + " (" + esc(agoText(P.seen[p])) + ")");
    html += '</table><table class="ls-ops"><tr><th>' + both(t.uplink) + "</th><th>" + both(t.operator) + "</th><th>" +
      both(t.status) + "</th></tr>";
    P.uplinks[p].forEach(function (u) {
      html += "<tr><td>" + esc(u[0]) + "</td><td>" + esc(u[1]) + "</td><td>" + dot(D.colours.probe[u[2]]) +
        both(D.text.probe[u[2]]) + "</td></tr>";
    });
    html += "</table>";
    var outages = P.outages[p];
    if (outages.length) {
      html += "<table class=\"ls-ops\"><tr><th colspan=\"2\">" + both(t.outage) + "</th></tr>";
      outages.forEach(function (o) {
        html += "<tr><td>" + both(D.text.condition[o[0]]) + (o[1] ? " (" + esc(o[1]) + ")" : "") +
          "<br>" + both(D.text.cause[o[3] === null ? "" : o[3]]) + "</td><td>" + both(D.text.from) + " " +
          when(o[2]) + "<br>" + ago(o[2]) + "</td></tr>";
      });
      html += "</table>";
    }
    return html + "</div>";
  }

  function deadZone(D, f) {
    var t = D.text.fields, c = f.properties.c;
    return open("dead-zone", c) + "<h4>" + both(D.text.dead_zone) + "</h4><table>" +
      row(t.commune, esc(D.communes[c] || c) + " (" + esc(c) + ")") +
      row(t.area, esc(f.properties.a) + " km²") + "</table></div>";
  }

  function commune(D, f) {
    var t = D.text.fields, q = f.properties;
    var html = open("commune", q.c) + "<h4>" + esc(q.n) + " (" + esc(q.c) + ")</h4><table>";
    html += row(t.population, num(q.pop));
    if (q.h !== undefined) {
      html += row(t.hamlets, num(q.h));
      html += row(t.none_hamlets, num(q.zh));
      html += row(t.none_population, num(q.z));
      html += row(t.share, q.s === null ? "—" : esc((q.s * 100).toFixed(1)) + " %");
    }
    if (q.p !== undefined && D.link) {
      var name = D.provinces[q.p] || q.p;
      html += row(t.province, '<a href="' + esc(D.link.replace("{code}", q.p)) + '">' + esc(name) + " — " +
        both(D.text.open_map) + "</a>");
    }
    return html + "</table></div>";
  }

  /* The national overview's shading: the share without signal, in classes (D.share). */
  function shareStyle(D) {
    var k = D.share;
    return function (f) {
      var s = f.properties.s, colour = k.none;
      if (s !== undefined && s !== null) {
        colour = k.colours[k.colours.length - 1];
        for (var i = 0; i < k.bounds.length; i++) if (s <= k.bounds[i]) { colour = k.colours[i]; break; }
      }
      return { fillColor: colour, fillOpacity: 0.75, color: "#8c8c8c", weight: 0.3 };
    };
  }

  /* -- a phone's screen ------------------------------------------------------------------------
   * Below NARROW px wide (or LOW px high: a phone held sideways) the layer list and the foldable
   * boxes (legend, province index) start folded, and a popup that opens folds them again. A popup is kept out of the controls' way: its size
   * is capped to the map, and Leaflet's auto-pan gets a padding measured from the controls that
   * are on screen, on the sides where there is room for the popup beside them (a wide screen),
   * else above and below (a phone). The defaults are the class's (L.Popup.mergeOptions), read by
   * every popup whenever it opens. */
  var NARROW = 700, LOW = 560, GAP = 8, POPUP_WIDTH = 420;
  var layerControls = [], folders = [], fitted = [];

  function narrow() { return window.innerWidth < NARROW || window.innerHeight < LOW; }

  L.Control.Layers.addInitHook(function () {
    if (narrow()) this.options.collapsed = true;
    layerControls.push(this);
  });

  /* The box's first heading becomes a button that folds what follows it. */
  function foldable(div) {
    var head = div.querySelector("h4");
    if (!head) return;
    var button = document.createElement("button");
    button.type = "button";
    button.className = "ls-fold";
    button.innerHTML = head.innerHTML;
    head.parentNode.replaceChild(button, head);
    div.className += " ls-foldable";
    function set(open) {
      L.DomUtil[open ? "removeClass" : "addClass"](div, "ls-folded");
      button.setAttribute("aria-expanded", open ? "true" : "false");
    }
    set(!narrow());
    L.DomEvent.on(button, "click", function () { set(L.DomUtil.hasClass(div, "ls-folded")); });
    folders.push(set);
  }

  /* How far the controls reach in from each side of the map, in pixels. */
  function reach(map) {
    var box = map.getContainer().getBoundingClientRect();
    var out = { top: 0, bottom: 0, left: 0, right: 0 };
    var all = map.getContainer().querySelectorAll(".leaflet-control");
    for (var i = 0; i < all.length; i++) {
      var r = all[i].getBoundingClientRect();
      if (!r.width || !r.height) continue;
      var corner = all[i].parentNode.className;
      if (/leaflet-top/.test(corner)) out.top = Math.max(out.top, r.bottom - box.top);
      else out.bottom = Math.max(out.bottom, box.bottom - r.top);
      if (/leaflet-left/.test(corner)) out.left = Math.max(out.left, r.right - box.left);
      else out.right = Math.max(out.right, box.right - r.left);
    }
    return out;
  }

  function fitPopups(map) {
    var size = map.getSize(), c = reach(map);
    // the popup's frame: 20 + 24 px of margins around the content, 1 px of border each side
    var width = Math.min(POPUP_WIDTH, size.x - 2 * GAP - 46);
    var beside = size.x - c.left - c.right - 2 * GAP >= width + 46;
    var tl = beside ? [c.left + GAP, GAP] : [GAP, c.top + GAP];
    var br = beside ? [c.right + GAP, GAP] : [GAP, c.bottom + GAP];
    // the content's height: less the frame (26 px), the tip (20 px) and the close button's row
    var height = size.y - tl[1] - br[1] - 60;
    L.Popup.mergeOptions({
      maxWidth: width,
      maxHeight: Math.max(120, height),
      autoPanPaddingTopLeft: L.point(tl),
      autoPanPaddingBottomRight: L.point(br)
    });
  }

  function watch(map) {
    if (fitted.indexOf(map) >= 0) return;
    fitted.push(map);
    function clear() {
      if (narrow()) {
        folders.forEach(function (set) { set(false); });
        layerControls.forEach(function (lc) { if (lc._map === map) lc.collapse(); });
      }
      fitPopups(map);
    }
    // before a click opens a popup, and again once it is open (a popup opened by a script)
    map.on("preclick", clear);
    map.on("popupopen", function (e) { clear(); e.popup.update(); });
    map.on("resize", function () { fitPopups(map); });
    map.whenReady(function () { fitPopups(map); });
  }

  function popup(build) {
    return function (feature, layer) { layer.bindPopup(function () { return build(feature); }); };
  }

  function control(map, position, html, className, fold) {
    var c = L.control({ position: position });
    c.onAdd = function () {
      var div = L.DomUtil.create("div", "ls-box " + className);
      div.innerHTML = html;
      if (fold) foldable(div);
      L.DomEvent.disableClickPropagation(div);
      L.DomEvent.disableScrollPropagation(div);
      return div;
    };
    c.addTo(map);
    watch(map);
    return c;
  }

  /* The data layers never depend on the tiles: when tiles fail, say so once and carry on. */
  function watchTiles(map, tiles, html) {
    var shown = false;
    tiles.on("tileerror", function () {
      if (shown) return;
      shown = true;
      control(map, "bottomleft", html, "ls-notice ls-tiles");
    });
  }

  return {
    esc: esc, duration: duration, hamlet: hamlet, site: site, probe: probe, deadZone: deadZone,
    commune: commune, shareStyle: shareStyle, popup: popup, control: control, watchTiles: watchTiles,
    narrow: narrow
  };
})();
