"use strict";
// vigil dashboard: bed grid, alert inbox, patient view. Live through /api/events (SSE).
(function () {
  var ROLE_RANK = { viewer: 0, clinician: 1, admin: 2 };
  var LEVELS = ["none", "low", "medium", "high", "critical"];
  var SEV_RANK = { low: 1, medium: 2, high: 3, critical: 4 };
  var GRID_SCORES = [
    ["qsofa", "qSOFA"],
    ["sofa", "SOFA"],
    ["news2", "NEWS2"],
    ["sepsis_risk", "Risk"]
  ];
  var SCORE_INFO = {
    qsofa: ["qSOFA", "Quick SOFA: 1 point each for respiratory rate ≥ 22/min, systolic BP ≤ 100 mmHg, altered mentation (GCS < 15). 2 or more suggests sepsis with poor outcome."],
    sofa: ["SOFA (rolling 24 h)", "Sequential Organ Failure Assessment: 0–4 points for each of six organ systems, worst value in the last 24 hours."],
    sofa_rise: ["SOFA rise", "SOFA total minus the patient's baseline; a rise of 2 or more with suspected infection meets Sepsis-3."],
    news2: ["NEWS2", "National Early Warning Score 2 from respiration, SpO2, oxygen, blood pressure, pulse, consciousness and temperature. 5–6 medium, 7+ high; any single parameter scoring 3 needs review."],
    shock_index: ["Shock index", "Heart rate divided by systolic blood pressure; 1.0 or more suggests shock."],
    septic_shock: ["Septic shock (Sepsis-3)", "Met (1) when a vasopressor is needed to hold MAP ≥ 65 mmHg and lactate is above 2 mmol/L."],
    shock_risk: ["Shock-transition risk", "Points for the predictors of progression to shock (0–11)."],
    sepsis_risk: ["Sepsis risk (model)", "Probability from the fitted sepsis-risk model."]
  };
  var THRESHOLDS = { qsofa: 2, sofa_rise: 2, news2: 7, shock_index: 1, septic_shock: 1, sepsis_risk: 0.5 };
  var VITALS = [
    ["hr", "HR", 0], ["rr", "RR", 0], ["spo2", "SpO₂", 0], ["sbp", "SBP", 0], ["map", "MAP", 0],
    ["temp", "T", 1], ["gcs", "GCS", 0], ["lactate", "Lac", 1], ["fio2", "FiO₂", 0], ["vasopressor", "Vaso", 2]
  ];
  var VITAL_NAMES = {
    hr: "Heart rate", rr: "Respiratory rate", spo2: "SpO₂", sbp: "Systolic BP", map: "Mean arterial pressure",
    temp: "Temperature", gcs: "GCS", lactate: "Lactate", fio2: "FiO₂", vasopressor: "Vasopressor dose"
  };

  var me = null;
  var beds = {};      // patient -> bed tile
  var alerts = {};    // alert id -> alert (open ones)
  var clock = null;   // newest data time (ms)
  var patientView = null; // the patient shown, if any
  var patientHours = 24;  // the patient view's trend length
  var renderQueued = false;

  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function canAct() { return me && ROLE_RANK[me.role] >= ROLE_RANK.clinician; }
  function ms(t) { return typeof t === "number" ? t : Date.parse(t); }
  function hhmm(t) {
    var d = new Date(ms(t));
    if (isNaN(d)) return "—";
    return d.toISOString().slice(11, 16);
  }
  function dayTime(t) {
    var d = new Date(ms(t));
    if (isNaN(d)) return "—";
    return d.toISOString().slice(5, 10) + " " + d.toISOString().slice(11, 16);
  }
  function age(s) {
    if (s == null) return "";
    if (s < 60) return "now";
    if (s < 3600) return Math.round(s / 60) + "m";
    if (s < 86400) return (s / 3600).toFixed(s < 36000 ? 1 : 0) + "h";
    return Math.round(s / 86400) + "d";
  }
  function fmt(v, dp) {
    if (v == null || isNaN(v)) return "—";
    return dp ? Number(v).toFixed(dp) : String(Math.round(v * 100) / 100);
  }
  // UCUM as people read it.
  var UNITS = { "mm[Hg]": "mmHg", "Cel": "°C", "{score}": "", "10*3/uL": "×10³/µL", "ug/kg/min": "µg/kg/min" };
  function unitText(u) { return Object.prototype.hasOwnProperty.call(UNITS, u) ? UNITS[u] : u; }
  function scoreFmt(kind, v) {
    if (kind === "sepsis_risk") return Math.round(v * 100) + "%";
    if (kind === "shock_index") return Number(v).toFixed(2);
    if (kind === "septic_shock") return v >= 1 ? "met" : "no";
    return fmt(v);
  }
  function scoreLevel(kind, v) {
    if (v == null) return "none";
    switch (kind) {
      case "septic_shock": return v >= 1 ? "critical" : "none";
      case "qsofa": return v >= 2 ? "high" : v >= 1 ? "low" : "none";
      case "sofa": return v >= 8 ? "high" : v >= 4 ? "medium" : v >= 2 ? "low" : "none";
      case "sofa_rise": return v >= 2 ? "high" : v >= 1 ? "low" : "none";
      case "news2": return v >= 7 ? "high" : v >= 5 ? "medium" : v >= 1 ? "low" : "none";
      case "shock_index": return v >= 1.3 ? "high" : v >= 1 ? "medium" : v >= 0.8 ? "low" : "none";
      case "sepsis_risk": return v >= 0.5 ? "high" : v >= 0.2 ? "medium" : v >= 0.1 ? "low" : "none";
      case "shock_risk": return v >= 6 ? "high" : v >= 3 ? "medium" : v >= 1 ? "low" : "none";
    }
    return "none";
  }

  // ---------------------------------------------------------------- API
  function api(path, opts) {
    opts = opts || {};
    opts.credentials = "same-origin";
    return fetch(path, opts).then(function (r) {
      if (r.status === 401) {
        window.location.replace("/login");
        throw new Error("signed out");
      }
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) {
          var e = new Error(j.error || ("HTTP " + r.status));
          e.status = r.status;
          throw e;
        }
        return j;
      });
    });
  }

  // ---------------------------------------------------------------- SVG
  function spark(points, kind, w, h, cls, from, to) {
    w = w || 100; h = h || 22;
    if (!points || points.length === 0) {
      return '<svg class="' + cls + '" viewBox="0 0 ' + w + " " + h + '" preserveAspectRatio="none" aria-hidden="true"></svg>';
    }
    var t1 = to || points[points.length - 1][0];
    var t0 = from || t1 - 24 * 3600000;
    // Less than a day of data: the axis spans what there is (at least 2 h), not an empty day.
    t0 = Math.max(t0, Math.min(points[0][0], t1 - 2 * 3600000));
    var max = 0, min = 0;
    points.forEach(function (p) { if (p[1] > max) max = p[1]; if (p[1] < min) min = p[1]; });
    var thr = THRESHOLDS[kind];
    if (thr != null && cls === "chart" && thr > max) max = thr;
    if (max === min) max = min + 1;
    var pad = 2;
    function x(t) { return ((t - t0) / Math.max(1, t1 - t0)) * w; }
    function y(v) { return h - pad - ((v - min) / (max - min)) * (h - 2 * pad); }
    var pts = points.filter(function (p) { return p[0] >= t0; }).map(function (p) {
      return x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1);
    });
    if (pts.length === 1) pts.push(w.toFixed(1) + "," + pts[0].split(",")[1]);
    var line = "";
    if (thr != null && cls === "chart") {
      line = '<line class="thr" x1="0" x2="' + w + '" y1="' + y(thr).toFixed(1) + '" y2="' + y(thr).toFixed(1) + '"></line>';
    }
    return '<svg class="' + cls + '" viewBox="0 0 ' + w + " " + h + '" preserveAspectRatio="none" role="img" aria-label="' +
      esc(kind) + ' trend">' + line + '<polyline points="' + pts.join(" ") + '"></polyline></svg>';
  }

  // ---------------------------------------------------------------- grid
  function openAlertFor(patient) {
    var best = null;
    Object.keys(alerts).forEach(function (id) {
      var a = alerts[id];
      if (a.patient === patient && (!best || (SEV_RANK[a.severity] || 0) > (SEV_RANK[best.severity] || 0))) best = a;
    });
    return best;
  }

  function vitalsHtml(b) {
    return VITALS.filter(function (v) { return b.vitals && b.vitals[v[0]]; }).map(function (v) {
      var x = b.vitals[v[0]];
      return '<span class="v' + (x.stale ? " stale" : "") + '" data-vital="' + v[0] + '" title="' + esc(VITAL_NAMES[v[0]]) + " at " +
        esc(dayTime(x.time)) + (x.unit ? " (" + esc(x.unit) + ")" : "") + (x.stale ? ", stale" : "") + '"><span>' + v[1] +
        "</span><b>" + fmt(x.value, v[2]) + "</b><small>" + age(x.age_s) + "</small></span>";
    }).join("");
  }

  function tileHtml(b) {
    var scores = GRID_SCORES.map(function (s) {
      var sc = b.scores && b.scores[s[0]];
      var v = sc ? sc.value : null;
      return '<div class="sc lvl-' + scoreLevel(s[0], v) + '" data-score="' + s[0] + '"><label>' + s[1] + "</label><strong>" +
        (sc ? scoreFmt(s[0], v) : "—") + "</strong>" + spark((b.trend || {})[s[0]], s[0], 100, 22, "spark", clock ? clock - 24 * 3600000 : null, clock) + "</div>";
    }).join("");
    var a = openAlertFor(b.patient);
    var alertLine = a ? '<div class="tile-alert"><span class="badge sev-' + esc(a.severity) + '">' + esc(a.severity) +
      '</span><span class="rule">' + esc(a.rule.replace(/_/g, " ")) + " · " + esc(a.state) + "</span></div>" : "";
    var shock = b.scores && b.scores.septic_shock && b.scores.septic_shock.value >= 1;
    return '<article class="tile lvl-' + esc(b.level) + '" tabindex="0" data-patient="' + esc(b.patient) + '" data-level="' + esc(b.level) + '">' +
      '<div class="tile-head"><span class="bed">' + esc(b.bed || "—") + '</span><span class="pt">' + esc(b.patient) +
      (b.unit ? " · " + esc(b.unit) : "") + "</span>" + (shock ? '<span class="badge lvl-critical">septic shock</span>' : "") +
      '<span class="age' + (b.age_s > 1800 ? " stale" : "") + '" title="Last scored ' + esc(dayTime(b.at)) + '">' + age(b.age_s) + "</span></div>" +
      '<div class="vitals">' + vitalsHtml(b) + "</div>" +
      '<div class="scores">' + scores + "</div>" + alertLine + "</article>";
  }

  function bedOrder(a, b) {
    var ka = (a.unit || "") + "\u0000" + (a.bed || "\uffff");
    var kb = (b.unit || "") + "\u0000" + (b.bed || "\uffff");
    return ka.localeCompare(kb, undefined, { numeric: true }) || a.patient.localeCompare(b.patient);
  }

  function renderGrid() {
    // One tile per bed: the newest patient in it.
    var perBed = {};
    Object.keys(beds).forEach(function (p) {
      var b = beds[p];
      var key = b.bed ? (b.unit || "") + "/" + b.bed : "patient:" + p;
      if (!perBed[key] || ms(perBed[key].at) < ms(b.at)) perBed[key] = b;
    });
    var list = Object.keys(perBed).map(function (k) { return perBed[k]; }).sort(bedOrder);
    $("grid").innerHTML = list.map(tileHtml).join("");
    $("grid-empty").hidden = list.length > 0;
  }

  // ---------------------------------------------------------------- inbox
  function alertOrder(a, b) {
    var open = function (x) { return x.state === "active" || x.state === "escalated" ? 1 : 0; };
    return open(b) - open(a) || (SEV_RANK[b.severity] || 0) - (SEV_RANK[a.severity] || 0) ||
      ms(b.updated_at) - ms(a.updated_at);
  }

  function alertHtml(a) {
    var acts = "";
    if (canAct()) {
      acts = '<div class="actions">' +
        (a.state !== "acknowledged" ? '<button type="button" class="ack" data-act="acknowledge" data-id="' + esc(a.id) + '">Acknowledge</button>' : "") +
        '<button type="button" class="esc secondary" data-act="escalate" data-id="' + esc(a.id) + '">Escalate</button></div>';
    }
    var meta = "raised " + dayTime(a.raised_at) + " · updated " + hhmm(a.updated_at);
    if (a.escalation_level) meta += " · escalation " + a.escalation_level;
    if (a.acknowledged_by) meta += " · acknowledged by " + esc(a.acknowledged_by) + " at " + hhmm(a.acknowledged_at);
    return '<div class="alert sev-' + esc(a.severity) + " state-" + esc(a.state) + '" data-id="' + esc(a.id) + '" data-state="' + esc(a.state) + '">' +
      '<div class="a-head"><span class="badge sev-' + esc(a.severity) + '">' + esc(a.severity) + "</span>" +
      '<a class="where" href="#/patient/' + encodeURIComponent(a.patient) + '">' + esc(a.bed || a.patient) + "</a>" +
      '<span class="rule">' + esc(a.rule.replace(/_/g, " ")) + '</span><span class="badge state">' + esc(a.state) + "</span></div>" +
      '<p class="expl">' + esc(a.explanation) + '</p><div class="a-meta">' + meta + "</div>" + acts + "</div>";
  }

  function renderInbox() {
    var list = Object.keys(alerts).map(function (k) { return alerts[k]; }).sort(alertOrder);
    $("inbox-list").innerHTML = list.map(alertHtml).join("");
    $("inbox-empty").hidden = list.length > 0;
    var waiting = list.filter(function (a) { return a.state === "active" || a.state === "escalated"; }).length;
    var c = $("alert-count");
    c.textContent = String(waiting);
    c.className = "count" + (waiting ? " hot" : "");
    $("inbox-note").textContent = canAct() ? "" : "read-only";
  }

  function takeAlert(a) {
    if (a.state === "resolved") delete alerts[a.id];
    else alerts[a.id] = a;
  }

  function loadAlerts() {
    return api("/api/alerts?limit=500").then(function (list) {
      alerts = {};
      list.forEach(takeAlert);
      queueRender();
    }).catch(function (e) { showInboxError(e.message); });
  }

  function showInboxError(msg) {
    var e = $("inbox-error");
    e.textContent = msg;
    e.hidden = !msg;
  }

  function act(id, action, button) {
    button.disabled = true;
    showInboxError("");
    api("/api/alerts/" + encodeURIComponent(id) + "/" + action, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}"
    }).then(function (a) {
      takeAlert(a);
      queueRender();
    }).catch(function (e) {
      button.disabled = false;
      showInboxError(e.status === 403 ? "Your role may not " + action + " alerts." : "Could not " + action + ": " + e.message);
    });
  }

  // ---------------------------------------------------------------- patient view
  function componentRows(s) {
    return s.components.map(function (c) {
      var missing = c.note === "missing";
      var cls = missing ? "missing" : c.points > 0 && s.kind !== "shock_index" ? "scored" : "";
      var val = c.value != null ? fmt(c.value) + (c.unit ? " " + esc(unitText(c.unit)) : "") : "—";
      var note = [c.estimated ? "estimated" : "", missing ? "" : c.note || ""].filter(Boolean).join("; ");
      return '<tr class="' + cls + '"><td>' + esc(c.name.replace(/_/g, " ")) + (note ? '<small class="cnote">' + esc(note) + "</small>" : "") +
        '</td><td class="pts">' + fmt(c.points) + '</td><td class="num">' + val + '</td><td class="when" title="' + (c.time ? esc(dayTime(c.time)) : "") + '">' +
        (c.time ? esc(hhmm(c.time)) : missing ? "missing" : "—") + "</td></tr>";
    }).join("");
  }

  function axis(points, from, now) {
    var t0 = points && points.length ? Math.max(from, Math.min(points[0][0], now - 2 * 3600000)) : from;
    var h = Math.round((now - t0) / 3600000);
    return '<div class="axis"><span>' + esc(dayTime(t0)) + "</span><span>" + h + " h</span><span>" + esc(dayTime(now)) + "</span></div>";
  }

  function renderPatient(p) {
    var el = $("patient");
    var now = clock || ms(p.at);
    var from = now - p.hours * 3600000;
    var open = Object.keys(alerts).map(function (k) { return alerts[k]; })
      .filter(function (a) { return a.patient === p.patient; }).sort(alertOrder);
    var vit = VITALS.filter(function (v) { return p.vitals[v[0]]; }).map(function (v) {
      var x = p.vitals[v[0]];
      return "<tr" + (x.stale ? ' class="missing"' : "") + ' data-vital="' + v[0] + '" title="via ' + esc(x.from.replace(/_/g, " ")) + '"><td>' +
        esc(VITAL_NAMES[v[0]]) + '</td><td class="num">' + fmt(x.value, v[2]) + (x.unit ? " " + esc(unitText(x.unit)) : "") +
        '</td><td class="when" title="' + esc(dayTime(x.time)) + '">' + esc(hhmm(x.time)) + '</td><td class="when">' +
        (x.age_s < 60 ? "now" : age(x.age_s) + " ago") + (x.stale ? ", stale" : "") + "</td></tr>";
    }).join("");
    var cards = p.latest.map(function (s) {
      var info = SCORE_INFO[s.kind] || [s.kind, ""];
      var lvl = scoreLevel(s.kind, s.value);
      var missing = s.missing && s.missing.length ? '<p class="what">Missing or stale, scored as normal: ' + esc(s.missing.join(", ").replace(/_/g, " ")) + "</p>" : "";
      return '<section class="card" data-score="' + esc(s.kind) + '"><h2>' + esc(info[0]) + '<span class="val lvl-' + lvl + '">' +
        scoreFmt(s.kind, s.value) + '</span></h2><p class="what">' + esc(info[1]) + (s.window_min ? " Window " + s.window_min + " min." : "") +
        " Computed " + esc(dayTime(s.computed_at)) + ".</p>" + missing +
        '<div class="table-wrap"><table><thead><tr><th>component</th><th>points</th><th>value</th><th>measured</th></tr></thead><tbody>' +
        componentRows(s) + "</tbody></table></div>" +
        spark(p.history[s.kind], s.kind, 300, 100, "chart", from, now) + axis(p.history[s.kind], from, now) + "</section>";
    }).join("");
    var ranges = '<span class="ranges" role="group" aria-label="Trend length">' + [6, 12, 24].map(function (h) {
      return '<button type="button" data-hours="' + h + '"' + (h === p.hours ? ' class="on" aria-pressed="true"' : ' aria-pressed="false"') + ">" + h + " h</button>";
    }).join("") + "</span>";
    el.innerHTML = '<div class="p-head"><a class="back" href="#/">← Beds</a><h1>' + esc(p.bed || "no bed") + " · " + esc(p.patient) + "</h1>" +
      '<span class="badge lvl-' + esc(p.level) + '">' + esc(p.level === "none" ? "no warning" : p.level) + "</span>" +
      '<span class="note">' + esc(p.unit || "") + " · last scored " + esc(dayTime(p.at)) + (p.age_s >= 60 ? " (" + age(p.age_s) + " before the newest data)" : "") + "</span>" + ranges + "</div>" +
      (open.length ? '<div class="card p-alerts">' + open.map(alertHtml).join("") + "</div>" : "") +
      '<div class="p-grid"><section class="card vitals-card"><h2>Latest values</h2><p class="what">The newest reading behind each score, with when it was measured.</p>' +
      '<div class="table-wrap"><table class="vit-table"><thead><tr><th>value</th><th></th><th>measured</th><th>age</th></tr></thead><tbody>' +
      vit + "</tbody></table></div></section>" + cards + "</div>";
  }

  // The data clock never lags the data on screen.
  function seen(t) {
    var x = ms(t);
    if (!isNaN(x) && (clock == null || x > clock)) clock = x;
  }

  function loadPatient(id) {
    return api("/api/patients/" + encodeURIComponent(id) + "/scores?hours=" + patientHours).then(function (p) {
      seen(p.at);
      queueRender(false);
      if (patientView === id) renderPatient(p);
    }).catch(function (e) {
      if (patientView === id) {
        $("patient").innerHTML = '<div class="p-head"><a class="back" href="#/">← Beds</a></div><p class="error">' + esc(e.message) + "</p>";
      }
    });
  }

  // ---------------------------------------------------------------- audit log
  function auditRow(e) {
    var a = alerts[e.alert_id];
    var where = a ? esc(a.bed || "—") + " · " + esc(a.patient) : esc(e.alert_id);
    return '<tr data-alert="' + esc(e.alert_id) + '"><td>' + esc(dayTime(e.at)) + '</td><td class="user">' + esc(e.user) +
      '</td><td>' + esc(e.role) + '</td><td class="action">' + esc(e.action) + '</td><td>' + where +
      '</td><td>' + esc(e.from) + ' → ' + esc(e.to) + '</td><td>' + esc(e.peer || "—") + '</td></tr>';
  }
  function loadAudit() {
    api("/api/audit?limit=500").then(function (list) {
      $("audit-error").hidden = true;
      $("audit-rows").innerHTML = list.map(auditRow).join("");
      $("audit-empty").hidden = list.length > 0;
    }).catch(function (e) {
      $("audit-error").textContent = e.message;
      $("audit-error").hidden = false;
    });
    api("/api/burden").then(function (b) {
      var ack = b.time_to_ack_s ? ", time to acknowledge median " + Math.round(b.time_to_ack_s.median / 60) + " min" : "";
      $("burden").textContent = "Alarm burden: " + b.episodes + " episode(s) over " + fmt(b.patient_days, 1) +
        " patient-days (" + fmt(b.episodes_per_patient_day, 2) + " per patient-day) from " + b.rule_alerts +
        " rule alert(s); " + b.notifications + " page(s), " + b.escalations + " escalation(s), " +
        b.acknowledged + " acknowledged" + ack + ".";
    }).catch(function () {});
  }

  // ---------------------------------------------------------------- routing and rendering
  var patientTimer = null;
  function route() {
    var h = window.location.hash || "#/";
    var m = h.match(/^#\/patient\/(.+)$/);
    clearInterval(patientTimer);
    if (m) {
      patientView = decodeURIComponent(m[1]);
      document.body.setAttribute("data-route", "patient");
      $("board").hidden = true;
      $("patient").hidden = false;
      $("patient").innerHTML = '<p class="empty">Loading…</p>';
      loadPatient(patientView);
      // The patient view refreshes its history every few seconds; tiles stream live.
      patientTimer = setInterval(function () { if (patientView) loadPatient(patientView); }, 5000);
    } else if (h === "#/audit") {
      patientView = null;
      document.body.setAttribute("data-route", "audit");
      $("board").hidden = true;
      $("patient").hidden = true;
      $("audit").hidden = false;
      loadAudit();
      patientTimer = setInterval(loadAudit, 5000);
    } else {
      patientView = null;
      document.body.setAttribute("data-route", h === "#/alerts" ? "alerts" : "beds");
      $("board").hidden = false;
      $("patient").hidden = true;
    }
    if (h !== "#/audit") $("audit").hidden = true;
    $("nav-beds").className = h === "#/" || h === "" ? "on" : "";
    $("nav-alerts").className = h === "#/alerts" ? "on" : "";
    $("nav-audit").className = h === "#/audit" ? "on" : "";
    window.scrollTo(0, 0);
  }

  var inboxDirty = true;
  function queueRender(inbox) {
    if (inbox !== false) inboxDirty = true;
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(function () {
      renderQueued = false;
      renderGrid();
      // Bed updates leave the inbox (and its buttons) in place.
      if (inboxDirty) { inboxDirty = false; renderInbox(); }
      $("clock").textContent = clock ? dayTime(clock) + " UTC" : "—";
    });
  }

  // ---------------------------------------------------------------- live updates
  function connect() {
    var es = new EventSource("/api/events");
    var conn = $("conn");
    es.onopen = function () { conn.textContent = "live"; conn.className = "conn live"; };
    es.addEventListener("bed", function (ev) {
      try { var b = JSON.parse(ev.data); beds[b.patient] = b; seen(b.at); queueRender(false); } catch (e) { /* ignore a bad event */ }
    });
    es.addEventListener("alert", function (ev) {
      try { takeAlert(JSON.parse(ev.data)); queueRender(); } catch (e) { /* ignore a bad event */ }
    });
    es.addEventListener("clock", function (ev) { seen(ev.data); queueRender(false); });
    es.addEventListener("resync", function () { loadAlerts(); });
    es.onerror = function () {
      conn.textContent = "reconnecting"; conn.className = "conn down";
      // A closed session ends here: the API answers 401 and api() goes to the login page.
      api("/api/me").then(function () { loadAlerts(); }).catch(function () {});
    };
  }

  document.addEventListener("click", function (ev) {
    var range = ev.target.closest("button[data-hours]");
    if (range && patientView) { patientHours = Number(range.getAttribute("data-hours")) || 24; loadPatient(patientView); return; }
    var btn = ev.target.closest("button[data-act]");
    if (btn) { ev.stopPropagation(); act(btn.getAttribute("data-id"), btn.getAttribute("data-act"), btn); return; }
    var tile = ev.target.closest(".tile");
    if (tile) window.location.hash = "#/patient/" + encodeURIComponent(tile.getAttribute("data-patient"));
  });
  document.addEventListener("keydown", function (ev) {
    var tile = ev.target.closest && ev.target.closest(".tile");
    if (tile && (ev.key === "Enter" || ev.key === " ")) {
      ev.preventDefault();
      window.location.hash = "#/patient/" + encodeURIComponent(tile.getAttribute("data-patient"));
    }
  });
  $("logout").addEventListener("click", function () {
    fetch("/api/logout", { method: "POST", credentials: "same-origin" }).finally(function () { window.location.replace("/login"); });
  });
  window.addEventListener("hashchange", route);

  api("/api/me").then(function (u) {
    me = u;
    document.body.setAttribute("data-role", u.role);
    $("who").textContent = u.user + " (" + u.role + ")";
    route();
    return Promise.all([
      api("/api/beds").then(function (list) {
        list.forEach(function (b) { beds[b.patient] = b; seen(b.at); });
      }).catch(function (e) { $("grid-empty").textContent = e.message; }),
      loadAlerts()
    ]);
  }).then(function () {
    queueRender();
    connect();
  }).catch(function () {});
})();
