// tasktrail dashboard: confirmations and live updates over Server-Sent Events.
// No framework: EventSource feeds the rows and the task page; text only (textContent).
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

  // Status counts change with every transition; fetch the page again (at most once a
  // second) and swap in its counts, which the server rendered and escaped.
  var countsTimer = null;
  function refreshCounts() {
    var counts = document.querySelector("ul.counts");
    if (!counts || countsTimer) {
      return;
    }
    countsTimer = window.setTimeout(function () {
      countsTimer = null;
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) {
            return;
          }
          var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("ul.counts");
          if (fresh) {
            counts.replaceWith(document.importNode(fresh, true));
          }
        })
        .catch(function () { /* the next transition tries again */ });
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
      refreshCounts();
    }
    document.querySelectorAll("[data-task-id]").forEach(function (scope) {
      if (scope.dataset.taskId === event.task_id) {
        apply(scope, event);
      }
    });
  };
  window.tasktrailStream = source;
})();
