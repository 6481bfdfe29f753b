/*
 * feedback-loop widget: thumbs up/down, an optional comment, and what the user did with the answer
 * (copied it, edited it, discarded it), posted to the feedback-loop API. No dependencies.
 *
 *   Load this file with a script tag (src="feedback-loop.js"), add <div id="fb"></div>, then:
 *
 *     const widget = FeedbackLoop.mount(document.getElementById("fb"), {
 *       apiUrl: "https://abc123.execute-api.eu-west-1.amazonaws.com/prod",  // the stack's ApiUrl, without /v1
 *       apiKey: "flk_...",            // a key made for this site: it is visible to anyone who opens the page
 *       requestId: "req_123",         // the LLM request the answer came from (its eval log's request_id)
 *       output: document.getElementById("answer"),  // optional: copy and edit signals are read from it
 *       userId: "u-42", userCohort: "pro",          // optional
 *       labels: { up: "Good", down: "Bad" },         // optional: any of up, down, discard, send,
 *                                                    // placeholder, thanks, failed
 *     });
 *     widget.discarded();             // or call the signals yourself
 *
 * Every event gets its event_id before the first attempt, so a retry (network error, 429 or 5xx,
 * honouring Retry-After) is stored once. Text is only ever set with textContent, never as HTML.
 */
(function (global) {
  "use strict";

  var RETRIES = 4;
  var LABELS = { up: "\u25B2 Helpful", down: "\u25BC Not helpful", discard: "Discard", send: "Send comment",
                 placeholder: "What could be better? (optional)", thanks: "Thanks for the feedback.",
                 failed: "Could not send feedback" };

  function eventId() {
    if (global.crypto && global.crypto.randomUUID) return global.crypto.randomUUID();
    return "ev-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }

  function element(tag, attributes, text) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) { node.setAttribute(name, attributes[name]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function delay(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  function Widget(root, options) {
    if (!options || !options.apiUrl || !options.apiKey || !options.requestId) {
      throw new Error("FeedbackLoop.mount needs apiUrl, apiKey and requestId");
    }
    this.root = root;
    this.options = options;
    this.apiUrl = String(options.apiUrl).replace(/\/+$/, "");
    this.labels = {};
    var labels = this.labels;
    Object.keys(LABELS).forEach(function (name) { labels[name] = (options.labels || {})[name] || LABELS[name]; });
    this.sent = [];  // {feedback_type, status} of every event, for the page and for tests
    this.render();
    if (options.output) this.watch(options.output);
  }

  Widget.prototype.post = function (feedbackType, value) {
    var self = this;
    var body = { request_id: String(this.options.requestId), feedback_type: feedbackType, value: value,
                 event_id: eventId(), timestamp: new Date().toISOString() };
    if (this.options.userId) body.user_id = String(this.options.userId);
    if (this.options.userCohort) body.user_cohort = String(this.options.userCohort);
    if (this.options.metadata) body.metadata = this.options.metadata;
    var payload = JSON.stringify(body);

    function attempt(n) {
      return fetch(self.apiUrl + "/v1/feedback", {
        method: "POST", keepalive: payload.length < 60000, body: payload,
        headers: { "Content-Type": "application/json", "x-api-key": self.options.apiKey }
      }).then(function (response) {
        if ((response.status === 429 || response.status >= 500) && n < RETRIES) {
          var after = parseFloat(response.headers.get("Retry-After"));
          return delay(isNaN(after) ? 250 * Math.pow(2, n) : after * 1000).then(function () { return attempt(n + 1); });
        }
        return response.json().catch(function () { return {}; }).then(function (json) {
          return { status: response.status, body: json };
        });
      }, function (error) {
        if (n < RETRIES) return delay(250 * Math.pow(2, n)).then(function () { return attempt(n + 1); });
        return { status: 0, body: { error: { message: String(error) } } };
      });
    }

    return attempt(0).then(function (result) {
      var record = { feedback_type: feedbackType, status: result.status, event_id: body.event_id };
      self.sent.push(record);
      var ok = result.status === 200 || result.status === 201;
      self.say(ok ? self.labels.thanks : self.labels.failed + " (" + (result.status || "network") + ").");
      if (self.options.onResult) self.options.onResult(record, result.body);
      return record;
    });
  };

  Widget.prototype.say = function (text) { this.status.textContent = text; };

  Widget.prototype.render = function () {
    var self = this;
    this.root.classList.add("feedback-loop");
    var labels = this.labels;
    var up = element("button", { type: "button", "data-fl": "up", "aria-label": "Good answer" }, labels.up);
    var down = element("button", { type: "button", "data-fl": "down", "aria-label": "Bad answer" }, labels.down);
    var discard = element("button", { type: "button", "data-fl": "discard" }, labels.discard);
    var form = element("form", { "data-fl": "comment-form", hidden: "" });
    var text = element("textarea", { "data-fl": "comment", maxlength: "10000", rows: "2",
                                     placeholder: labels.placeholder });
    var send = element("button", { type: "submit", "data-fl": "send" }, labels.send);
    this.status = element("span", { "data-fl": "status", role: "status" });
    form.appendChild(text);
    form.appendChild(send);

    function thumb(kind) {
      up.disabled = down.disabled = true;
      self.post(kind, true);
      form.hidden = false;
      text.focus();
    }
    up.addEventListener("click", function () { thumb("explicit_thumbs_up"); });
    down.addEventListener("click", function () { thumb("explicit_thumbs_down"); });
    discard.addEventListener("click", function () { self.discarded(); });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var comment = text.value.trim();
      if (!comment) return;
      send.disabled = true;
      self.post("explicit_text_comment", comment).then(function () { form.hidden = true; });
    });
    [up, down, discard, form, this.status].forEach(function (node) { self.root.appendChild(node); });
  };

  // Signals from the answer itself: copying it means it was used; changing it is an edit.
  Widget.prototype.watch = function (output) {
    var self = this;
    var original = "value" in output ? output.value : output.textContent;
    var copied = false;
    output.addEventListener("copy", function () {
      if (!copied) { copied = true; self.used(); }
    });
    var settle = function () {
      var now = "value" in output ? output.value : output.textContent;
      if (now !== original && now.trim()) { original = now; self.edited(now); }
    };
    output.addEventListener("blur", settle);
    output.addEventListener("change", settle);
  };

  Widget.prototype.used = function () { return this.post("implicit_usage", true); };
  Widget.prototype.edited = function (text) { return this.post("implicit_edit", String(text)); };
  Widget.prototype.discarded = function () { return this.post("implicit_discard", true); };

  global.FeedbackLoop = {
    mount: function (root, options) { return new Widget(root, options); },
    version: "1"
  };
})(typeof window !== "undefined" ? window : this);
