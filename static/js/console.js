// Keyboard shortcuts for the review console. Keys are ignored while typing in a field.
(function () {
  "use strict";
  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "INPUT" && t.type !== "radio" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }
  // Enter is a shortcut only while focus is on the page itself (or, for deciding, inside the
  // decision form); a focused button or link keeps its own Enter action.
  function onPage(e) {
    var t = e.target;
    return !t || t === document.body || t === document.documentElement || t === document;
  }
  function inDecisionForm(e) {
    var form = document.getElementById("decision-form");
    return !!form && !!e.target && form.contains(e.target);
  }
  function submit(id) {
    var form = document.getElementById(id);
    if (form) { form.requestSubmit ? form.requestSubmit() : form.submit(); return true; }
    return false;
  }
  function chooseVerdict(value) {
    var radio = document.querySelector('#decision-form input[name=verdict][value=' + value + ']');
    if (!radio) return;
    radio.checked = true;
    filterReasons(radio.form, value);
  }
  // Offer only the reasons that fit the chosen verdict (the item page and the bulk confirmation).
  function filterReasons(form, verdict) {
    var select = form && form.querySelector("select[name=reason]");
    if (!select) return;
    Array.prototype.forEach.call(select.options, function (opt) {
      var applies = opt.getAttribute("data-applies");
      opt.hidden = !!applies && applies !== "both" && applies !== verdict;
    });
    if (select.selectedOptions[0] && select.selectedOptions[0].hidden) select.value = "";
  }
  function chooseReason(n) {
    var select = document.getElementById("id_reason");
    if (!select) return;
    var visible = Array.prototype.filter.call(select.options, function (o) { return o.value && !o.hidden; });
    if (visible[n - 1]) select.value = visible[n - 1].value;
  }
  var cursor = -1;
  function moveRow(step) {
    var rows = document.querySelectorAll("#queue-rows tr.queue-row");
    if (!rows.length) return;
    if (rows[cursor]) rows[cursor].classList.remove("selected");
    cursor = Math.max(0, Math.min(rows.length - 1, cursor + step));
    rows[cursor].classList.add("selected");
    rows[cursor].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("change", function (e) {
    if (e.target && e.target.name === "verdict" && e.target.form) filterReasons(e.target.form, e.target.value);
  });
  document.addEventListener("DOMContentLoaded", function () {
    var chosen = document.querySelector("#bulk-confirm-form select[name=verdict]");
    if (chosen) filterReasons(chosen.form, chosen.value);
  });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    var k = e.key;
    if (k === "a") chooseVerdict("approve");
    else if (k === "o") chooseVerdict("overturn");
    else if (/^[1-9]$/.test(k)) chooseReason(parseInt(k, 10));
    else if (k === "Enter" && !onPage(e) && !inDecisionForm(e)) return; // a focused button or link does its own action
    else if (k === "Enter" && document.getElementById("decision-form")) submit("decision-form");
    else if (k === "Enter") {
      var rows = document.querySelectorAll("#queue-rows tr.queue-row");
      if (rows[cursor]) window.location = rows[cursor].getAttribute("data-href");
      else return;
    }
    else if (k === "u") submit("undo-form");
    else if (k === "r") submit("release-form");
    else if (k === "s") submit("skip-form");
    else if (k === "n") submit("claim-next-form");
    else if (k === "j") moveRow(1);
    else if (k === "k") moveRow(-1);
    else if (k === "q") window.location = "/";
    else return;
    e.preventDefault();
  });
})();
