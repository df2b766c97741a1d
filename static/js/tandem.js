// Small behaviours shared by every page. htmx sends the CSRF token from <body hx-headers>.
document.addEventListener("htmx:responseError", (event) => {
  const status = event.detail.xhr.status;
  const target = document.getElementById("htmx-error");
  const text = status === 403
    ? "You are not allowed to do that (or your session expired: reload and log in)."
    : `The server answered ${status}. Nothing was lost; try again.`;
  if (target) {
    target.textContent = text;
    target.hidden = false;
  } else {
    window.alert(text);
  }
});
