// The SAML POST pages' one script, served as /assets/saml-post.js (CSP script-src 'self' on those pages
// only): it submits the page's form, which carries a signed SAML message, as soon as the page loads.
(() => {
  const form = document.getElementById('saml-post-form');
  if (form instanceof HTMLFormElement) form.submit();
})();
