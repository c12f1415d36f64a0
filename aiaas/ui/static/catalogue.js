// The catalogue's live parts: the state that refreshes itself, the try-it form, the chat
// box and the admin actions. Every page reads without this file. The admin token stays
// in this tab's sessionStorage and only ever leaves it in an Authorization header.
"use strict";

(() => {
  const TOKEN_KEY = "aiaas-admin-token";
  const LIVE_REFRESH_MS = 2000;
  const $ = (selector, root = document) => root.querySelector(selector);
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  async function errorText(response) {
    try {
      const body = await response.json();
      if (typeof body.error === "string") return body.error;
      if (body.error && body.error.message) return body.error.message;
    } catch (ignored) {
      // not JSON: the status says enough
    }
    return `HTTP ${response.status}`;
  }

  // ---- admin ----------------------------------------------------------------------
  function say(text, isError) {
    const box = $("#admin-message");
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("error", Boolean(isError));
  }

  function showAdmin(on) {
    document.querySelectorAll("[data-admin]").forEach((element) => {
      element.hidden = !on;
    });
    $("#admin-login").hidden = on;
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $("#admin-token");
    const candidate = input.value;
    input.value = "";
    const response = await fetch("/ui/api/admin", {
      headers: { Authorization: `Bearer ${candidate}` },
    });
    if (response.ok) {
      sessionStorage.setItem(TOKEN_KEY, candidate);
      showAdmin(true);
      say("Signed in for this browser session.");
    } else {
      say(`Token refused: ${await errorText(response)}`, true);
      input.focus();
    }
  }

  function formBody(form) {
    const body = {};
    for (const element of form.elements) {
      if (!element.name) continue;
      body[element.name] = element.hasAttribute("data-number")
        ? Number(element.value)
        : element.value;
    }
    return body;
  }

  async function adminAction(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const response = await fetch(form.action, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token()}` },
      body: JSON.stringify(formBody(form)),
    });
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showAdmin(false);
      say(`Signed out: ${await errorText(response)}`, true);
    } else if (!response.ok) {
      say(await errorText(response), true);
    } else if (form.hasAttribute("data-reload")) {
      await response.text(); // read to its end: a reload now would abort it
      window.location.reload();
    } else {
      say("Done.");
    }
  }

  function setUpAdmin() {
    const login = $("#admin-login");
    if (!login) return;
    showAdmin(Boolean(token()));
    login.addEventListener("submit", signIn);
    $("#admin-logout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showAdmin(false);
      say("Signed out.");
      $("#admin-token").focus();
    });
    document.querySelectorAll("form.admin-action").forEach((form) => {
      form.addEventListener("submit", adminAction);
    });
  }

  // ---- live state -----------------------------------------------------------------
  function setUpLive() {
    const box = $("#live");
    if (!box) return;
    setInterval(async () => {
      if (document.hidden) return;
      try {
        const response = await fetch(box.dataset.liveUrl);
        if (response.ok) box.innerHTML = await response.text(); // our own escaped fragment
      } catch (ignored) {
        // the server is restarting: the next tick tries again
      }
    }, LIVE_REFRESH_MS);
  }

  // ---- try it ---------------------------------------------------------------------
  function tensorInputs(form) {
    return [...form.querySelectorAll("fieldset.tensor")].map((fieldset) => {
      const data = JSON.parse($(".data", fieldset).value);
      return {
        name: fieldset.dataset.input,
        datatype: fieldset.dataset.datatype,
        shape: JSON.parse($(".shape", fieldset).value),
        data: Array.isArray(data) ? data.flat(Infinity) : [data],
      };
    });
  }

  function setUpTryIt() {
    const form = $("#try-it");
    if (!form) return;
    const answer = $("#try-it-answer");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      let inputs;
      try {
        inputs = tensorInputs(form);
      } catch (error) {
        answer.textContent = `Not valid JSON: ${error.message}`;
        return;
      }
      answer.textContent = "Sending…";
      const response = await fetch(form.dataset.inferUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ inputs }),
      });
      const text = await response.text();
      let shown = text;
      try {
        shown = JSON.stringify(JSON.parse(text), null, 2);
      } catch (ignored) {
        // shown as it came
      }
      answer.dataset.status = String(response.status);
      answer.textContent = response.ok ? shown : `HTTP ${response.status}\n${shown}`;
    });
  }

  // ---- chat -----------------------------------------------------------------------
  function addMessage(role, text) {
    const item = document.createElement("li");
    item.className = role;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Model";
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    item.append(who, body);
    $("#chat-log").append(item);
    return body;
  }

  // Server-sent events from fetch: `data: {json}` lines, events split by a blank line.
  async function readEvents(response, onText) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let whole = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return whole;
      buffer += decoder.decode(value, { stream: true });
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const line = buffer.slice(0, end).trim();
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf("\n\n");
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return whole;
        const choice = JSON.parse(data).choices[0];
        const piece = choice && choice.delta && choice.delta.content;
        if (piece) {
          whole += piece;
          onText(piece);
        }
      }
    }
  }

  function setUpChat() {
    const form = $("#chat-form");
    if (!form) return;
    const model = $("#chat").dataset.model;
    const history = [];
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $("#chat-input");
      const text = input.value.trim();
      if (!text) return;
      input.value = "";
      history.push({ role: "user", content: text });
      addMessage("user", text);
      const reply = addMessage("assistant", "");
      const button = $("button", form);
      button.disabled = true;
      try {
        const response = await fetch("/v1/chat/completions", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({
            model,
            messages: history,
            stream: true,
            max_tokens: Number($("#chat-max-tokens").value),
            temperature: Number($("#chat-temperature").value),
          }),
        });
        if (!response.ok) {
          reply.textContent = await errorText(response);
          history.pop();
          return;
        }
        let chunks = 0;
        const whole = await readEvents(response, (piece) => {
          reply.textContent += piece;
          chunks += 1;
          reply.dataset.chunks = String(chunks);
        });
        history.push({ role: "assistant", content: whole });
        reply.dataset.done = "true";
      } finally {
        button.disabled = false;
      }
    });
  }

  setUpAdmin();
  setUpLive();
  setUpTryIt();
  setUpChat();
})();
