"use strict";
(function () {
  var form = document.getElementById("login-form");
  var err = document.getElementById("login-error");
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    err.hidden = true;
    var body = JSON.stringify({
      user: document.getElementById("user").value.trim(),
      password: document.getElementById("password").value
    });
    fetch("/api/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      credentials: "same-origin",
      body: body
    }).then(function (r) {
      if (r.ok) {
        window.location.replace("/");
        return;
      }
      return r.json().catch(function () { return {}; }).then(function (j) {
        err.textContent = r.status === 401 ? "Unknown user or wrong password." : (j.error || ("Sign-in failed (" + r.status + ")."));
        err.hidden = false;
      });
    }).catch(function () {
      err.textContent = "vigil cannot be reached.";
      err.hidden = false;
    });
  });
})();
