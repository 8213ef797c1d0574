// The passkey pages' one script, served as /assets/passkey.js (CSP script-src 'self' on those pages
// only). It turns the server's options (JSON with base64url strings) into the binary form WebAuthn
// takes, runs the ceremony, and posts the credential back as JSON in the form's hidden field.
(() => {
  const form = document.getElementById('passkey-form');
  const status = document.getElementById('passkey-status');
  if (!form) return;

  const fromBase64url = (text) => {
    const base64 = text
      .replace(/-/g, '+')
      .replace(/_/g, '/')
      .padEnd(Math.ceil(text.length / 4) * 4, '=');
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  };
  const toBase64url = (buffer) => {
    const bytes = new Uint8Array(buffer);
    let binary = '';
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  };
  const say = (message) => {
    if (!status) return;
    status.textContent = message;
    status.hidden = false;
  };

  const creationOptions = (json) => ({
    ...json,
    challenge: fromBase64url(json.challenge),
    user: { ...json.user, id: fromBase64url(json.user.id) },
    excludeCredentials: (json.excludeCredentials || []).map((c) => ({ ...c, id: fromBase64url(c.id) })),
  });
  const requestOptions = (json) => ({
    ...json,
    challenge: fromBase64url(json.challenge),
    allowCredentials: (json.allowCredentials || []).map((c) => ({ ...c, id: fromBase64url(c.id) })),
  });

  const registrationJson = (credential) => ({
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: {
      clientDataJSON: toBase64url(credential.response.clientDataJSON),
      attestationObject: toBase64url(credential.response.attestationObject),
      transports: credential.response.getTransports ? credential.response.getTransports() : [],
    },
  });
  const assertionJson = (credential) => ({
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: {
      clientDataJSON: toBase64url(credential.response.clientDataJSON),
      authenticatorData: toBase64url(credential.response.authenticatorData),
      signature: toBase64url(credential.response.signature),
      userHandle: credential.response.userHandle ? toBase64url(credential.response.userHandle) : undefined,
    },
  });

  form.addEventListener('submit', async (event) => {
    if (form.elements.credential.value) return;
    event.preventDefault();
    if (!window.PublicKeyCredential || !navigator.credentials) {
      say('This browser does not support passkeys.');
      return;
    }
    try {
      const options = JSON.parse(form.dataset.options);
      const create = form.dataset.ceremony === 'create';
      const credential = create
        ? await navigator.credentials.create({ publicKey: creationOptions(options) })
        : await navigator.credentials.get({ publicKey: requestOptions(options) });
      if (!credential) throw new Error('no credential');
      form.elements.credential.value = JSON.stringify(create ? registrationJson(credential) : assertionJson(credential));
      form.submit();
    } catch {
      say('The passkey was not used. Try again, or go back and sign in another way.');
    }
  });
})();
