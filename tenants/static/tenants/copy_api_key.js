"use strict";
// The "Copy" button next to a new API key: the clipboard API where the page is a secure context
// (https, or the gateway on localhost), else the older select-and-copy. Hidden without JavaScript.
document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("copy-api-key");
  const input = document.getElementById("new-api-key");
  const status = document.getElementById("copy-status");
  if (!button || !input || !status) {
    return;
  }
  button.hidden = false;
  button.addEventListener("click", async () => {
    input.select();
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(input.value);
      } else if (!document.execCommand("copy")) {
        throw new Error("copy refused");
      }
      status.textContent = "Copied to the clipboard.";
    } catch (error) {
      status.textContent = "Could not copy: the key is selected, press Ctrl+C (or Cmd+C).";
    }
  });
});
