"use strict";
// The provider-account form holds every kind's settings, one fieldset per kind (class
// "provider-kind-<kind>"). Show only the chosen kind's. Without JavaScript all are shown, and only
// the chosen kind's are read when the form is saved.
document.addEventListener("DOMContentLoaded", () => {
  const kind = document.getElementById("id_kind");
  if (!kind) {
    return;
  }
  const showChosenKind = () => {
    for (const fieldset of document.querySelectorAll("fieldset.provider-kind")) {
      const chosen = fieldset.classList.contains(`provider-kind-${kind.value}`);
      fieldset.style.display = chosen ? "" : "none";
    }
  };
  kind.addEventListener("change", showChosenKind);
  showChosenKind();
});
