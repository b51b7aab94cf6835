// tasktrail dashboard: confirmations and live updates over Server-Sent Events.
// EventSource feeds progress in place (text only: textContent); htmx swaps in the
// server-rendered fragments when a transition is announced.
(function () {
  "use strict";

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
  });

  var body = document.body;
  var url = body.dataset.stream;
  if (!url || !window.EventSource) {
    return;
  }
  var reloadOn = body.dataset.reloadOn;

  function set(scope, field, text) {
    scope.querySelectorAll('[data-field="' + field + '"]').forEach(function (node) {
      node.textContent = text;
    });
  }

  function apply(scope, event) {
    if (event.status) {
      scope.querySelectorAll('[data-field="status"]').forEach(function (node) {
        node.textContent = event.status;
        node.className = "status status-" + event.status;
      });
    }
    if (event.progress !== null && event.progress !== undefined) {
      scope.querySelectorAll('progress[data-field="progress"]').forEach(function (node) {
        node.value = event.progress;
      });
      set(scope, "percent", Math.round(event.progress) + "%");
    }
    if (event.step !== null && event.step !== undefined) {
      set(scope, "step", event.step);
    }
  }

  // Server-rendered fragments (the tasks page's rows and counts) listen for "tt-changed"
  // and htmx fetches them again. Transitions come in bursts: announce a burst once, a
  // second after its first transition, so the last change of the burst is always shown.
  var changedTimer = null;
  function announceChange() {
    if (changedTimer) {
      return;
    }
    changedTimer = window.setTimeout(function () {
      changedTimer = null;
      body.dispatchEvent(new CustomEvent("tt-changed"));
    }, 1000);
  }

  var source = new EventSource(url, { withCredentials: true });
  source.onmessage = function (message) {
    var event = JSON.parse(message.data);
    if (reloadOn && event.type === reloadOn) {
      // Buttons, timeline, result and error all change with the status: draw them again.
      source.close();
      window.location.reload();
      return;
    }
    if (event.type === "transition") {
      announceChange();
    }
    document.querySelectorAll("[data-task-id]").forEach(function (scope) {
      if (scope.dataset.taskId === event.task_id) {
        apply(scope, event);
      }
    });
  };
  window.tasktrailStream = source;
})();
