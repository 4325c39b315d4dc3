// Small helpers shared by the page modules: toasts and the CSRF token.

export function toast(message, kind = "info", ms = 5000) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = document.createElement("div");
  item.className = `toast ${kind}`;
  item.textContent = message;
  box.appendChild(item);
  setTimeout(() => item.remove(), ms);
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// The error sentence of a JSON error answer, or a fallback naming the status.
export async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (e) {
    // Not JSON: fall through to the status line.
  }
  return `Request failed (${response.status})`;
}
