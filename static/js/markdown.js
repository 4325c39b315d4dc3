// Model text to safe HTML in the browser, with the allow-list of chats/markdown_rendering.py:
// no images, nothing that runs or styles, links only to http, https, mailto (or relative) and
// with rel="noopener noreferrer nofollow". HTML the model writes is shown as text, never markup.
import { Marked } from "../vendor/marked/marked.esm.js";
import DOMPurify from "../vendor/dompurify/purify.es.mjs";

const ALLOWED_TAGS = [
  "a", "p", "br", "hr", "strong", "em", "b", "i", "del", "code", "pre", "blockquote",
  "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
  "table", "thead", "tbody", "tr", "th", "td",
];
const ALLOWED_ATTR = ["href", "title", "align"];
// DOMPurify's own URI pattern with the schemes cut down to the server's: a scheme-less
// (relative) reference passes, any other scheme (javascript:, data:, ftp:) is dropped.
const ALLOWED_URI_REGEXP = /^(?:(?:https?|mailto):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i;

const escapeHtml = (text) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

const marked = new Marked({
  gfm: true,
  renderer: {
    // Raw HTML in the model's text (a block or inline tag) is shown as the characters it is.
    html({ text }) {
      return escapeHtml(text);
    },
  },
});

const purifier = DOMPurify(window);
purifier.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") node.setAttribute("rel", "noopener noreferrer nofollow");
});

export function markdownToSafeHtml(text) {
  const html = marked.parse(text, { async: false });
  return purifier
    .sanitize(html, {
      ALLOWED_TAGS,
      ALLOWED_ATTR,
      ALLOWED_URI_REGEXP,
    })
    .trim();
}
