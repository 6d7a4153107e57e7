/* A form marked data-submit-once is sent once: after the first submit its buttons are
   disabled and a second click (a double click, an impatient user) sends nothing more. The
   server answers a second POST truthfully anyway (refunds/admin/double_submit.py). */
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!form.hasAttribute || !form.hasAttribute("data-submit-once")) return;
  if (form.getAttribute("data-submitted") === "yes") {
    event.preventDefault();
    return;
  }
  form.setAttribute("data-submitted", "yes");
  // Disabled after this event, so the clicked button's own name and value are still sent.
  window.setTimeout(function () {
    form.querySelectorAll("input[type=submit], button[type=submit], button:not([type])").forEach(function (button) {
      button.disabled = true;
      button.classList.add("oms-submitting");
    });
  }, 0);
}, true);
