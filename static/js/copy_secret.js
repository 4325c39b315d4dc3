// The webhook page's "Copy" button: the secret to the clipboard, told in the button itself.
const button = document.getElementById("secret-copy");
if (button) {
  button.addEventListener("click", async () => {
    const text = document.getElementById(button.dataset.copy).textContent.trim();
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      // No clipboard (an http:// page, or refused): select it for Ctrl+C instead.
      window.getSelection().selectAllChildren(document.getElementById(button.dataset.copy));
      button.textContent = "Press Ctrl+C";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
}
