// The conversation page: send a prompt, stream the reply (SSE over fetch), stop, resume.
//
// Model text is only ever inserted with textContent while it streams; the finished reply is
// shown as the HTML the server rendered from Markdown and sanitized with nh3 (`done.html`).
import { csrfToken, errorMessage, toast } from "./ui.js";

const data = JSON.parse(document.getElementById("chat-data").textContent);
const list = document.getElementById("messages");
const form = document.getElementById("prompt-form");
const input = document.getElementById("prompt");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");
const UPDATE_MS = 50;
const RESUME_TRIES = 5;

let current = null; // the reply being streamed: { messageId }
let leaving = false; // the page is being left: a dropped stream is expected, not an error

window.addEventListener("pagehide", () => {
  leaving = true;
});

// Offsets are counted in characters (code points), as the server counts them.
const charCount = (text) => [...text].length;
const messageUrl = (template, messageId) => template.replace("/messages/0/", `/messages/${messageId}/`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.hidden = !busy;
  stopButton.disabled = false;
}

function addMessage(role, text) {
  document.getElementById("empty-chat")?.remove();
  const article = document.createElement("article");
  article.className = `message ${role}`;
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  bubble.textContent = text;
  article.appendChild(bubble);
  list.appendChild(article);
  article.scrollIntoView({ block: "end" });
  return article;
}

function addNote(article, text, kind = "") {
  const note = document.createElement("p");
  note.className = `message-note ${kind}`.trim();
  note.textContent = text;
  article.appendChild(note);
}

// Writes the growing text into the bubble at most every UPDATE_MS.
function bubbleWriter(article) {
  const bubble = article.querySelector(".bubble");
  let text = "";
  let timer = null;
  const write = () => {
    timer = null;
    bubble.textContent = text;
    article.classList.toggle("typing", text === "");
  };
  return {
    set(value) {
      text = value;
      if (timer === null) timer = setTimeout(write, UPDATE_MS);
    },
    flush() {
      if (timer !== null) clearTimeout(timer);
      write();
    },
  };
}

// Calls onEvent for each `data:` event of an SSE body. Unlike a split on "\n" per read, an
// event cut in two by the network is kept until its blank line arrives.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const blocks = buffer.split("\n\n");
    buffer = blocks.pop();
    for (const block of blocks) {
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue; // `: keep-alive` comments
        let event;
        try {
          event = JSON.parse(line.slice(6));
        } catch (e) {
          continue;
        }
        onEvent(event);
      }
    }
  }
}

// Follows one response until it ends; returns the text so far and the done/error events.
async function follow(response, article, writer, state) {
  try {
    await readEvents(response, (event) => {
      if (event.type === "chunk") {
        state.text += event.text;
        writer.set(state.text);
      } else if (event.type === "error") {
        state.error = event.message;
      } else if (event.type === "done") {
        state.done = event;
      }
    });
  } catch (e) {
    // The connection dropped (or the page is being left); the caller resumes.
  }
}

function finish(article, state) {
  article.classList.remove("typing");
  const bubble = article.querySelector(".bubble");
  const done = state.done;
  if (!done) {
    article.dataset.status = "interrupted";
    if (!leaving) {
      toast(state.lost || "The connection was lost; reload the page to see the rest of the reply.", "error");
    }
    return;
  }
  article.dataset.status = done.status;
  if (typeof done.html === "string" && done.html !== "") {
    bubble.innerHTML = done.html; // rendered and sanitized by the server (markdown + nh3)
  }
  if (state.error) {
    addNote(article, state.error, "error");
    toast(state.error, "error");
  } else if (done.status === "stopped") {
    addNote(article, "Stopped.");
  }
  if (state.text === "" && done.status === "complete") toast("Response was empty", "error");
}

// Streams a reply into `article`, resuming from what it has when the connection drops or
// when the server's stream failed without the reply's final status (`done.resumable`).
async function streamReply(article, messageId, firstResponse, initialText) {
  current = { messageId };
  setBusy(true);
  article.dataset.messageId = messageId;
  article.dataset.status = "streaming";
  const writer = bubbleWriter(article);
  // `lost`: why the last stream ended without the reply's end, shown if resuming fails.
  const state = { text: initialText, done: null, error: null, lost: null };
  writer.set(state.text);
  let response = firstResponse;
  for (let attempt = 0; ; attempt++) {
    if (response) await follow(response, article, writer, state);
    if (state.done?.resumable) {
      // That stream failed, not necessarily the reply: its stored end is read on resuming.
      state.lost = state.error;
      state.done = null;
      state.error = null;
    }
    if (state.done || leaving || attempt >= RESUME_TRIES) break;
    if (attempt > 0) await sleep(500 * attempt);
    const url = `${messageUrl(data.streamUrl, messageId)}?offset=${charCount(state.text)}`;
    try {
      response = await fetch(url, { headers: { Accept: "text/event-stream" } });
    } catch (e) {
      response = null;
      continue;
    }
    if (response.status >= 500) {
      response = null; // the server (or its database) is recovering: try again
      continue;
    }
    if (!response.ok) {
      toast(await errorMessage(response), "error");
      break;
    }
  }
  writer.flush();
  finish(article, state);
  current = null;
  setBusy(false);
}

async function send(prompt) {
  setBusy(true);
  const question = addMessage("user", prompt);
  const article = addMessage("assistant", "");
  article.classList.add("typing");
  let response;
  try {
    response = await fetch(data.sendUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({ prompt }),
    });
  } catch (e) {
    response = null;
  }
  if (!response || !response.ok) {
    toast(response ? await errorMessage(response) : "Could not reach the server.", "error");
    // Nothing was stored: take the bubbles back and give the prompt back to edit.
    question.remove();
    article.remove();
    input.value = prompt;
    setBusy(false);
    return;
  }
  const reply = streamReply(article, response.headers.get("X-Message-Id"), response, "");
  if (!data.hasTitle) showStoredTitle();
  await reply;
}

// The first prompt names the chat on the server: show that name without a reload.
async function showStoredTitle() {
  const response = await fetch(data.chatUrl, { headers: { Accept: "application/json" } });
  if (!response.ok) return;
  const { title } = await response.json();
  if (!title) return;
  data.hasTitle = true;
  document.getElementById("chat-title").textContent = title;
  document.title = `${title} · Sightline`;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = input.value.trim();
  if (!prompt || current) return;
  input.value = "";
  send(prompt);
});

input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

stopButton.addEventListener("click", async () => {
  if (!current) return;
  stopButton.disabled = true;
  const response = await fetch(messageUrl(data.stopUrl, current.messageId), {
    method: "POST",
    headers: { "X-CSRFToken": csrfToken() },
  });
  // On success the reply's own stream ends with `done` (status stopped).
  if (!response.ok) toast(await errorMessage(response), "error");
});

document.getElementById("delete-form").addEventListener("submit", (event) => {
  if (!window.confirm("Delete this chat and all its messages?")) event.preventDefault();
});

// A reply still being generated when the page was (re)loaded: show it growing again.
if (data.resume) {
  const article = list.querySelector(`[data-message-id="${data.resume.messageId}"]`);
  if (article) {
    const text = article.querySelector(".bubble").textContent;
    streamReply(article, data.resume.messageId, null, text);
  }
}
