// The conversation page's sidebar: the user's chats, rename in place and delete through the
// JSON API (PATCH/DELETE /api/v1/chats/<id>), and its toggle on a narrow screen.
import { csrfToken, errorMessage, toast } from "./ui.js";

async function apiCall(url, method, body) {
  try {
    return await fetch(url, {
      method,
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    return null;
  }
}

function startRename(item, onRenamed) {
  const link = item.querySelector(".chat-nav-title");
  if (item.querySelector("input")) return;
  const field = document.createElement("input");
  field.type = "text";
  field.maxLength = 120;
  field.value = link.textContent;
  field.setAttribute("aria-label", "New title");
  link.hidden = true;
  link.after(field);
  field.focus();
  field.select();
  let settled = false;
  const close = () => {
    settled = true;
    field.remove();
    link.hidden = false;
  };
  const save = async () => {
    if (settled) return;
    const title = field.value.trim();
    if (title === "" || title === link.textContent) return close();
    settled = true;
    field.disabled = true;
    const response = await apiCall(item.dataset.apiUrl, "PATCH", { title });
    if (!response || !response.ok) {
      toast(response ? await errorMessage(response) : "Could not reach the server.", "error");
      settled = false;
      field.disabled = false;
      field.focus();
      return;
    }
    const chat = await response.json();
    link.textContent = chat.title;
    close();
    onRenamed?.(item, chat.title);
  };
  field.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      save();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation(); // Esc here cancels the rename, not the reply
      close();
    }
  });
  field.addEventListener("blur", save);
}

async function remove(item, currentChatId) {
  const title = item.querySelector(".chat-nav-title").textContent;
  if (!window.confirm(`Delete “${title}” and all its messages?`)) return;
  const response = await apiCall(item.dataset.apiUrl, "DELETE");
  if (!response || !response.ok) {
    toast(response ? await errorMessage(response) : "Could not reach the server.", "error");
    return;
  }
  if (Number(item.dataset.chatId) === currentChatId) {
    // The open chat is gone: go to the next newest one, or to the list.
    const next = item.nextElementSibling || item.previousElementSibling;
    window.location.assign(next ? next.dataset.url : "/chats/");
    return;
  }
  item.remove();
  toast(`Deleted “${title}”`);
}

export function initSidebar({ currentChatId, onRenamed }) {
  const layout = document.getElementById("chat-layout");
  const toggle = document.getElementById("sidebar-toggle");
  const nav = document.getElementById("chat-nav");
  toggle.addEventListener("click", () => {
    const open = layout.classList.toggle("sidebar-open");
    toggle.setAttribute("aria-expanded", String(open));
  });
  // On a narrow screen the open sidebar covers the conversation: a tap beside it closes it.
  document.querySelector(".chat-main").addEventListener("click", (event) => {
    if (event.target.closest("#sidebar-toggle")) return;
    layout.classList.remove("sidebar-open");
    toggle.setAttribute("aria-expanded", "false");
  });
  nav.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const item = button.closest("li");
    if (button.classList.contains("rename")) {
      startRename(item, (renamed, title) => {
        if (Number(renamed.dataset.chatId) === currentChatId) onRenamed?.(title);
      });
    } else if (button.classList.contains("delete")) {
      remove(item, currentChatId);
    }
  });
}
