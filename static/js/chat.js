// The conversation page: send a prompt, stream the reply (SSE over fetch), stop, resume; follow
// the reply as it grows; copy a message; the prompt's limit; the sidebar of chats.
//
// Model text becomes HTML only through markdownToSafeHtml (sanitized, same allow-list as the
// server), rendered every RENDER_MS while it streams and the same way at the end, so a
// finished reply looks exactly as it did a moment before. The server's `done.html` is for
// other clients; its rendering of history is this page's no-JavaScript fallback.
import { markdownToSafeHtml } from "./markdown.js";
import { initSidebar } from "./chat_sidebar.js";
import { csrfToken, errorMessage, toast } from "./ui.js";

const data = JSON.parse(document.getElementById("chat-data").textContent);
const list = document.getElementById("messages");
const form = document.getElementById("prompt-form");
const input = document.getElementById("prompt");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");
const jumpButton = document.getElementById("jump-latest");
const countLabel = document.getElementById("prompt-count");
const limitLabel = document.getElementById("prompt-limit");
const RENDER_MS = 100;
const RESUME_TRIES = 5;
// Closer than this to the bottom counts as "at the latest message": the view follows.
const FOLLOW_SLACK_PX = 40;

let current = null; // the reply being streamed: { messageId }
let leaving = false; // the page is being left: a dropped stream is expected, not an error
let following = true; // the user has not scrolled up from the latest message

window.addEventListener("pagehide", () => {
  leaving = true;
});

// Offsets are counted in characters (code points), as the server counts them.
const charCount = (text) => [...text].length;
const messageUrl = (template, messageId) => template.replace("/messages/0/", `/messages/${messageId}/`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const numbers = new Intl.NumberFormat("en-US");

// The main column fills the window under the top bar, whose height depends on its wrapping.
function fitToWindow() {
  const top = document.querySelector("main").getBoundingClientRect().top + window.scrollY;
  document.documentElement.style.setProperty("--chat-top", `${Math.ceil(top)}px`);
}

// ---- Following the latest message ----

const distanceFromBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight;

function scrollToLatest() {
  list.scrollTop = list.scrollHeight;
  following = true;
  jumpButton.hidden = true;
}

// After the messages grew: keep the latest in view unless the user scrolled away from it.
function contentGrew() {
  if (following) scrollToLatest();
  else jumpButton.hidden = distanceFromBottom() <= FOLLOW_SLACK_PX;
}

list.addEventListener("scroll", () => {
  following = distanceFromBottom() <= FOLLOW_SLACK_PX;
  jumpButton.hidden = following;
});
jumpButton.addEventListener("click", scrollToLatest);

// ---- Messages ----

function formatTime(date) {
  const today = new Date().toDateString() === date.toDateString();
  const options = today
    ? { hour: "2-digit", minute: "2-digit" }
    : { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
  return date.toLocaleString([], options);
}

function showLocalTime(timeElement) {
  const date = new Date(timeElement.dateTime);
  if (Number.isNaN(date.getTime())) return;
  timeElement.textContent = formatTime(date);
  timeElement.title = date.toLocaleString([], { dateStyle: "full", timeStyle: "long" });
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    // No clipboard API (an insecure origin) or no permission: the selection way.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    if (!copied) {
      toast("Could not copy: the browser refused access to the clipboard.", "error");
      return;
    }
  }
  toast("Copied");
}

// The actions bar of a message (server-rendered or new): its local time and a copy button.
function decorate(article) {
  let actions = article.querySelector(".message-actions");
  if (!actions) {
    actions = document.createElement("div");
    actions.className = "message-actions";
    const time = document.createElement("time");
    time.dateTime = new Date().toISOString();
    actions.appendChild(time);
    article.appendChild(actions);
  }
  const time = actions.querySelector("time");
  if (time) showLocalTime(time);
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "icon copy";
  copy.title = "Copy";
  copy.setAttribute("aria-label", "Copy message");
  copy.textContent = "Copy";
  copy.addEventListener("click", () => copyText(article.dataset.source || ""));
  actions.prepend(copy);
  addBranchControls(article, actions);
}

// ---- Branches: regenerate a reply, edit a prompt, page through alternatives ----

const siblingsOf = (article) =>
  (article.dataset.siblings || article.dataset.messageId || "").split(",").filter(Boolean);

function actionButton(label, title, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `icon ${label.toLowerCase()}`;
  button.textContent = label;
  button.title = title;
  button.addEventListener("click", onClick);
  return button;
}

// Regenerate (replies) or Edit (prompts), and `‹ 1/2 ›` when the message has alternatives.
function addBranchControls(article, actions) {
  actions.querySelector(".branch-controls")?.remove();
  const controls = document.createElement("span");
  controls.className = "branch-controls";
  const siblings = siblingsOf(article);
  const position = siblings.indexOf(article.dataset.messageId);
  if (siblings.length > 1 && position >= 0) {
    const pager = document.createElement("span");
    pager.className = "branch-pager";
    const previous = actionButton("‹", "Previous version", () => showBranch(siblings[position - 1]));
    previous.setAttribute("aria-label", "Previous version");
    previous.disabled = position === 0;
    const next = actionButton("›", "Next version", () => showBranch(siblings[position + 1]));
    next.setAttribute("aria-label", "Next version");
    next.disabled = position === siblings.length - 1;
    const label = document.createElement("span");
    label.className = "pager-position";
    label.textContent = `${position + 1}/${siblings.length}`;
    pager.append(previous, label, next);
    controls.appendChild(pager);
  }
  if (article.dataset.messageId) {
    if (article.classList.contains("assistant")) {
      controls.appendChild(
        actionButton("Regenerate", "Write this reply again (this one is kept)", () => regenerate(article)),
      );
    } else {
      controls.appendChild(
        actionButton("Edit", "Edit this prompt and send it again (the conversation branches here)", () =>
          startEdit(article),
        ),
      );
    }
  }
  actions.appendChild(controls);
}

// The articles from `article` on leave the page: a new branch takes their place.
function removeFrom(article) {
  let node = article;
  while (node) {
    const next = node.nextElementSibling;
    node.remove();
    node = next;
  }
}

// Shows the branch through `messageId` (stored as the chat's branch on the server): the page is
// drawn again from the server, which knows the whole tree.
async function showBranch(messageId) {
  if (current || !messageId) return;
  const response = await fetch(data.branchUrl, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify({ message_id: Number(messageId) }),
  });
  if (!response.ok) {
    toast(await errorMessage(response), "error");
    return;
  }
  window.location.assign(`${window.location.pathname}?message=${messageId}#message-${messageId}`);
}

// Starts a reply that takes the place of `replaced` (and everything after it): POSTs to `url`,
// then streams the new reply. `question` is the new prompt's text for an edit, else null.
async function startAlternative(replaced, url, body, question) {
  if (current) return;
  current = { messageId: null };
  setBusy(true);
  const siblings = siblingsOf(replaced);
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body),
    });
  } catch (e) {
    response = null;
  }
  if (!response || !response.ok) {
    toast(response ? await errorMessage(response) : "Could not reach the server.", "error");
    current = null;
    setBusy(false);
    return false;
  }
  const replyId = response.headers.get("X-Message-Id");
  removeFrom(replaced);
  if (question !== null) addMessage("user", question);
  const article = addMessage("assistant", "");
  if (question === null) {
    // The new reply is the last of its prompt's alternatives.
    article.dataset.messageId = replyId;
    article.dataset.siblings = [...siblings, replyId].join(",");
    addBranchControls(article, article.querySelector(".message-actions"));
  }
  await streamReply(article, replyId, response, "");
  return true;
}

function regenerate(article) {
  startAlternative(article, messageUrl(data.regenerateUrl, article.dataset.messageId), {}, null);
}

// Edit in place: the prompt's bubble becomes a text box with Send and Cancel.
function startEdit(article) {
  if (current || article.querySelector(".edit-box")) return;
  const bubble = article.querySelector(".bubble");
  const box = document.createElement("form");
  box.className = "edit-box";
  const area = document.createElement("textarea");
  area.value = article.dataset.source || "";
  area.rows = Math.min(10, Math.max(2, area.value.split("\n").length));
  area.setAttribute("aria-label", "Edited prompt");
  const send = document.createElement("button");
  send.type = "submit";
  send.className = "primary";
  send.textContent = "Send";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.textContent = "Cancel";
  box.append(area, send, cancel);
  bubble.hidden = true;
  bubble.after(box);
  area.focus();
  const close = () => {
    box.remove();
    bubble.hidden = false;
  };
  cancel.addEventListener("click", close);
  area.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      close();
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      box.requestSubmit();
    }
  });
  box.addEventListener("submit", async (event) => {
    event.preventDefault();
    const prompt = area.value.trim();
    if (!prompt) return;
    if (charCount(prompt) > data.promptMaxChars) {
      toast(
        `This prompt is ${numbers.format(charCount(prompt))} characters; the limit is ` +
          `${numbers.format(data.promptMaxChars)}.`,
        "error",
      );
      return;
    }
    send.disabled = true;
    const url = messageUrl(data.editUrl, article.dataset.messageId);
    if (!(await startAlternative(article, url, { prompt }, prompt))) send.disabled = false;
  });
}

// New messages' ids and alternatives (an edited prompt's siblings) are known to the server only:
// read them once a reply has ended, so each message can be edited, regenerated and paged.
async function refreshBranchControls() {
  const response = await fetch(data.messagesUrl, { headers: { Accept: "application/json" } });
  if (!response.ok) return;
  const { results } = await response.json();
  const articles = [...list.querySelectorAll(".message")];
  if (articles.length !== results.length) return;
  results.forEach((message, index) => {
    const article = articles[index];
    article.dataset.messageId = message.id;
    article.id = `message-${message.id}`;
    article.dataset.siblings = message.siblings.join(",");
    addBranchControls(article, article.querySelector(".message-actions"));
  });
}

function renderBubble(article) {
  const bubble = article.querySelector(".bubble");
  const text = article.dataset.source || "";
  if (article.classList.contains("assistant")) bubble.innerHTML = markdownToSafeHtml(text);
  else bubble.textContent = text;
}

function addMessage(role, text) {
  document.getElementById("empty-chat")?.remove();
  const article = document.createElement("article");
  article.className = `message ${role}`;
  article.dataset.source = text;
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  article.appendChild(bubble);
  renderBubble(article);
  decorate(article);
  list.appendChild(article);
  scrollToLatest(); // sending is a wish to see the answer
  return article;
}

function addNote(article, text, kind = "") {
  const note = document.createElement("p");
  note.className = `message-note ${kind}`.trim();
  note.textContent = text;
  article.querySelector(".message-actions").before(note);
  contentGrew();
}

// Renders the growing text into the bubble at most every RENDER_MS.
function bubbleWriter(article) {
  let timer = null;
  const write = () => {
    timer = null;
    renderBubble(article);
    article.classList.toggle("typing", (article.dataset.source || "") === "");
    contentGrew();
  };
  return {
    set(value) {
      article.dataset.source = value;
      if (timer === null) timer = setTimeout(write, RENDER_MS);
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
  const done = state.done;
  if (!done) {
    article.dataset.status = "interrupted";
    if (!leaving) {
      toast(state.lost || "The connection was lost; reload the page to see the rest of the reply.", "error");
    }
    return;
  }
  article.dataset.status = done.status;
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
  await refreshBranchControls();
}

async function send(prompt) {
  current = { messageId: null }; // sending: a second Enter must not send again
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
    current = null;
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
  showTitle(title);
}

function showTitle(title) {
  document.getElementById("chat-title").textContent = title;
  document.title = `${title} · Sightline`;
  const link = document.querySelector(`#chat-nav li[data-chat-id="${data.chatId}"] .chat-nav-title`);
  if (link) link.textContent = title;
}

// ---- The prompt box ----

// The prompt as it would be sent, and whether it is within the limit. The textarea has no
// maxlength: a paste is never cut short silently, it is refused with words instead.
function promptState() {
  const prompt = input.value.trim();
  const length = charCount(prompt);
  return { prompt, length, over: length > data.promptMaxChars };
}

function showPromptLength() {
  const { length, over } = promptState();
  countLabel.textContent = `${numbers.format(length)} / ${numbers.format(data.promptMaxChars)}`;
  countLabel.classList.toggle("over", over);
  limitLabel.textContent = over
    ? `This prompt is ${numbers.format(length)} characters; the limit is ` +
      `${numbers.format(data.promptMaxChars)}. Shorten it by ` +
      `${numbers.format(length - data.promptMaxChars)} to send it.`
    : "";
  input.setAttribute("aria-invalid", over ? "true" : "false");
  sendButton.disabled = current !== null || over;
}

function setBusy(busy) {
  list.classList.toggle("busy", busy);
  stopButton.hidden = !busy;
  stopButton.disabled = false;
  if (busy) sendButton.disabled = true;
  else showPromptLength();
}

input.addEventListener("input", showPromptLength);

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const { prompt, over } = promptState();
  if (!prompt || current || over) return;
  input.value = "";
  showPromptLength();
  send(prompt);
});

input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

async function stopReply() {
  if (!current?.messageId || stopButton.disabled) return;
  stopButton.disabled = true;
  const response = await fetch(messageUrl(data.stopUrl, current.messageId), {
    method: "POST",
    headers: { "X-CSRFToken": csrfToken() },
  });
  // On success the reply's own stream ends with `done` (status stopped).
  if (!response.ok) toast(await errorMessage(response), "error");
}

stopButton.addEventListener("click", stopReply);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && current) {
    event.preventDefault();
    stopReply();
  }
});

document.getElementById("delete-form").addEventListener("submit", (event) => {
  if (!window.confirm("Delete this chat and all its messages?")) event.preventDefault();
});

// ---- The chat's model ----

// Offered when the assistant server lists more than one model; the choice is the chat's.
async function initModelChoice() {
  const select = document.getElementById("chat-model");
  let catalog;
  try {
    const response = await fetch(data.modelsUrl, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    catalog = await response.json();
  } catch (e) {
    return; // the page works without it: the default model answers
  }
  const ids = catalog.models.map((model) => model.id);
  if (ids.length < 2) return;
  const chosen = data.model || catalog.default;
  for (const id of ids.includes(chosen) ? ids : [chosen, ...ids]) {
    const option = document.createElement("option");
    option.value = id;
    option.textContent = id === catalog.default ? `${id} (default)` : id;
    option.selected = id === chosen;
    select.appendChild(option);
  }
  select.closest("label").hidden = false;
  select.addEventListener("change", async () => {
    const response = await fetch(data.chatUrl, {
      method: "PATCH",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({ model: select.value }),
    });
    if (response.ok) {
      data.model = select.value;
      toast(`Replies in this chat now come from ${select.value}.`);
    } else {
      toast(await errorMessage(response), "error");
      select.value = data.model || catalog.default;
    }
  });
}

// ---- Start ----

fitToWindow();
window.addEventListener("resize", fitToWindow);
for (const article of list.querySelectorAll(".message")) {
  renderBubble(article);
  decorate(article);
}
showPromptLength();
initSidebar({ currentChatId: data.chatId, onRenamed: showTitle });
initModelChoice();
scrollToLatest();

// A reply still being generated when the page was (re)loaded: show it growing again.
if (data.resume) {
  const article = list.querySelector(`[data-message-id="${data.resume.messageId}"]`);
  if (article) streamReply(article, data.resume.messageId, null, article.dataset.source || "");
}
