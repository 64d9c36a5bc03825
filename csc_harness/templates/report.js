(function () {
  "use strict";
  document.querySelectorAll("table#leaderboard th[data-sort]").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = th.closest("table").tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var desc = th.dataset.dir !== "desc";
      th.dataset.dir = desc ? "desc" : "asc";
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
        var r = th.dataset.sort === "num" ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return desc ? -r : r;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  document.body.dataset.sortable = "on";

  var source = document.getElementById("items-data");
  if (!source) { return; }
  // Item text is untrusted (candidate replies, judge rationales): it only ever reaches
  // the page through textContent, never as markup.
  var D = JSON.parse(source.textContent);
  var F = ["stage", "strategy", "topic", "language"];
  var COL = {id: 0, conv: 1, turn: 2, stage: 3, strategy: 4, topic: 5, language: 6,
             replies: 7, scores: 8, dm: 9, dj: 10};
  // Simulated conversations: [id, topic, language, runs, scores, dm, dj].
  var CCOL = {id: 0, stage: -1, strategy: -1, topic: 1, language: 2, replies: 3, scores: 4,
              dm: 5, dj: 6};
  var CONVS = D.conversations || [];
  var ALL = D.items.map(function (r) { return {c: COL, r: r}; }).concat(
    CONVS.map(function (r) { return {c: CCOL, r: r}; }));
  var METRIC_LABEL = {rougeL: "ROUGE-L", bleu2: "BLEU-2", bleu4: "BLEU-4",
                      strategy_acc: "strategy"};
  var PAGE = 50;
  var shown = PAGE;
  var list = document.getElementById("items-list");
  var count = document.getElementById("items-count");
  var more = document.getElementById("items-more");
  var sel = {};

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function fill(name, values) {
    var select = document.getElementById("f-" + name);
    // A page of conversations only has no stage or strategy filter.
    if (!select) { sel[name] = {value: ""}; return; }
    values.forEach(function (v) {
      var opt = el("option", null, v);
      opt.value = v;
      select.appendChild(opt);
    });
    select.addEventListener("change", function () { shown = PAGE; render(); });
    sel[name] = select;
  }

  F.forEach(function (name) {
    var seen = {};
    ALL.forEach(function (e) {
      var v = e.c[name] < 0 ? null : e.r[e.c[name]];
      if (v !== null && v !== undefined) { seen[v] = true; }
    });
    fill(name, Object.keys(seen).sort());
  });
  fill("model", D.models.slice());
  ["smin", "smax", "sort", "kind"].forEach(function (name) {
    sel[name] = document.getElementById("f-" + name);
    if (sel[name]) {
      sel[name].addEventListener("change", function () { shown = PAGE; render(); });
    }
  });

  function scoreOk(e) {
    var lo = parseFloat(sel.smin.value), hi = parseFloat(sel.smax.value);
    if (isNaN(lo) && isNaN(hi)) { return true; }
    var model = sel.model.value === "" ? -1 : D.models.indexOf(sel.model.value);
    return e.r[e.c.scores].some(function (s) {
      if (s[3] === null || (model >= 0 && s[0] !== model)) { return false; }
      return (isNaN(lo) || s[3] >= lo) && (isNaN(hi) || s[3] <= hi);
    });
  }

  // A conversation has no stage or gold strategy: those filters leave it out.
  function matches(e) {
    if (sel.kind && sel.kind.value !== "" && sel.kind.value !== (e.c === COL ? "item" : "conversation")) {
      return false;
    }
    for (var i = 0; i < F.length; i++) {
      var want = sel[F[i]].value, col = e.c[F[i]];
      if (want !== "" && (col < 0 || String(e.r[col]) !== want)) { return false; }
    }
    if (sel.model.value !== "") {
      var m = D.models.indexOf(sel.model.value);
      if (!e.r[e.c.replies].some(function (r) { return r[0] === m; })) { return false; }
    }
    return scoreOk(e);
  }

  function sorted(entries) {
    var key = sel.sort.value;
    if (key === "order") { return entries; }
    var c = key === "models" ? "dm" : "dj";
    return entries.slice().sort(function (a, b) {
      var x = a.r[a.c[c]], y = b.r[b.c[c]];
      return (y === null ? -1 : y) - (x === null ? -1 : x);
    });
  }

  function utterance(u) {
    var li = el("li", u[0] === "s" ? "sup" : "cus");
    li.appendChild(el("span", "who", u[0] === "s" ? "客服 supporter" : "客户 customer"));
    if (u[2]) { li.appendChild(el("span", "tag strat", u[2])); }
    li.appendChild(el("div", "text", u[1]));
    return li;
  }

  function scoreTable(scores, model) {
    var table = el("table", "scores");
    var head = table.createTHead().insertRow();
    ["Judge", "Dimension", "Score", "Rationale"].forEach(function (h) {
      head.appendChild(el("th", h === "Rationale" ? "l" : null, h));
    });
    var body = table.createTBody();
    scores.forEach(function (s) {
      if (s[0] !== model) { return; }
      var row = body.insertRow();
      row.appendChild(el("td", "l", D.judges[s[1]]));
      row.appendChild(el("td", "l", D.dims[s[2]]));
      row.appendChild(el("td", null, s[3] === null ? "no verdict" : s[3]));
      row.appendChild(el("td", "l why", s[4] || ""));
    });
    return table;
  }

  function card(it) {
    var box = el("article", "item");
    box.dataset.item = it[COL.id];
    var title = el("h3", null, it[COL.id]);
    box.appendChild(title);
    var facts = [it[COL.stage], "gold " + it[COL.strategy], it[COL.topic], it[COL.language]];
    if (it[COL.dm] !== null) { facts.push("model spread " + it[COL.dm]); }
    if (it[COL.dj] !== null) { facts.push("judge spread " + it[COL.dj]); }
    box.appendChild(el("p", "note", facts.filter(function (f) { return f; }).join(" · ")));
    var dialogue = D.dialogues[it[COL.conv]];
    var turn = it[COL.turn];
    if (dialogue && turn !== null && turn <= dialogue.length) {
      var ctx = el("details", "ctx");
      ctx.appendChild(el("summary", null, "Conversation so far (" + turn + " utterances)"));
      var ol = el("ol", "dialogue");
      dialogue.slice(0, turn).forEach(function (u) { ol.appendChild(utterance(u)); });
      ctx.appendChild(ol);
      box.appendChild(ctx);
      if (dialogue[turn]) {
        var gold = el("div", "reply gold");
        gold.appendChild(el("span", "who", "Gold reply"));
        gold.appendChild(el("span", "tag strat", dialogue[turn][2] || it[COL.strategy]));
        gold.appendChild(el("div", "text", dialogue[turn][1]));
        box.appendChild(gold);
      }
    } else {
      box.appendChild(el("p", "note", "No context: the dataset given to the report lacks this dialogue."));
    }
    it[COL.replies].forEach(function (r) {
      var rep = el("div", "reply");
      rep.dataset.model = D.models[r[0]];
      rep.appendChild(el("span", "who", D.models[r[0]]));
      rep.appendChild(el("span", "tag strat", r[2] ? "claims " + r[2] : "no strategy claimed"));
      rep.appendChild(el("div", "text candidate", r[1] === null ? "(no reply text)" : r[1]));
      if (r[3]) { rep.appendChild(metricLine(r[3], D.metric_settings[D.models[r[0]]])); }
      rep.appendChild(scoreTable(it[COL.scores], r[0]));
      box.appendChild(rep);
    });
    return box;
  }

  function metricLine(values, setting) {
    var parts = [];
    D.metric_names.forEach(function (name, i) {
      var v = values[i];
      if (v === null || v === undefined) { return; }
      parts.push(name === "strategy_acc" ? (v ? "strategy correct" : "strategy wrong")
        : METRIC_LABEL[name] + " " + v.toFixed(1));
    });
    var p = el("p", "note metrics", "Automatic (" + (setting || "reference") +
      " setting, this reply alone): " + parts.join(" · "));
    return p;
  }

  function conversationCard(cv) {
    var box = el("article", "item conversation");
    box.dataset.conversation = cv[CCOL.id];
    box.appendChild(el("h3", null, "Simulated conversation " + cv[CCOL.id]));
    var facts = [cv[CCOL.topic], cv[CCOL.language]];
    if (cv[CCOL.dm] !== null) { facts.push("model spread " + cv[CCOL.dm]); }
    if (cv[CCOL.dj] !== null) { facts.push("judge spread " + cv[CCOL.dj]); }
    box.appendChild(el("p", "note", facts.filter(function (f) { return f; }).join(" · ")));
    cv[CCOL.replies].forEach(function (run) {
      var rep = el("div", "reply run");
      rep.dataset.model = D.models[run[0]];
      rep.appendChild(el("span", "who", D.models[run[0]]));
      rep.appendChild(el("span", "tag strat", "ended: " + (run[2] || "?") +
        (run[4] ? " (" + run[4] + ")" : "")));
      if (run[3]) { rep.appendChild(el("span", "note", " customer played by " + run[3])); }
      var ol = el("ol", "dialogue");
      run[1].forEach(function (u) { ol.appendChild(utterance(u)); });
      rep.appendChild(ol);
      rep.appendChild(scoreTable(cv[CCOL.scores], run[0]));
      box.appendChild(rep);
    });
    return box;
  }

  function render() {
    var hits = sorted(ALL.filter(matches));
    while (list.firstChild) { list.removeChild(list.firstChild); }
    hits.slice(0, shown).forEach(function (e) {
      list.appendChild(e.c === COL ? card(e.r) : conversationCard(e.r));
    });
    var convs = hits.filter(function (e) { return e.c === CCOL; }).length;
    var parts = [];
    if (D.items.length || !CONVS.length) { parts.push((hits.length - convs) + " of " + D.items.length + " items"); }
    if (CONVS.length) { parts.push(convs + " of " + CONVS.length + " conversations"); }
    var text = parts.join(" · ");
    count.textContent = text + (hits.length > shown ? " (showing " + shown + ")" : "");
    more.hidden = hits.length <= shown;
    document.body.dataset.items = String(hits.length - convs);
    document.body.dataset.conversations = String(convs);
  }

  more.addEventListener("click", function () { shown += PAGE; render(); });

  function route() {
    var hash = location.hash || "";
    if (hash.indexOf("#items?") !== 0) { return false; }
    var params = hash.slice(7).split("&");
    F.concat(["model", "kind"]).forEach(function (name) { if (sel[name]) { sel[name].value = ""; } });
    params.forEach(function (p) {
      var eq = p.indexOf("=");
      var name = decodeURIComponent(p.slice(0, eq));
      var value = decodeURIComponent(p.slice(eq + 1));
      if (sel[name] && sel[name].tagName === "SELECT") { sel[name].value = value; }
    });
    shown = PAGE;
    render();
    document.getElementById("items").scrollIntoView();
    return true;
  }
  window.addEventListener("hashchange", route);
  if (!route()) { render(); }
})();
