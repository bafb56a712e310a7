// Account pages: /signup, /login, /account (who you are, your sessions and API tokens,
// log out). Forms post JSON to the API; with the session cookie every state-changing call
// carries the CSRF header (common.js).
'use strict';
(function () {
  const P = window.Potok;
  const { el, t } = P;
  const app = P.clear(P.app());
  const page = P.boot.page;
  const next = () => {
    const n = new URLSearchParams(location.search).get('next') || '';
    return n.startsWith('/') && !n.startsWith('//') && !n.startsWith('/\\') ? n : '/account';
  };

  const credentials = (submitKey, withRole) => {
    const err = el('p', { class: 'form-error', id: 'form-error', role: 'alert' });
    const username = el('input', { id: 'username', name: 'username', autocomplete: 'username', required: true, maxlength: '32' });
    const password = el('input', { id: 'password', name: 'password', type: 'password', autocomplete: withRole ? 'new-password' : 'current-password', required: true, minlength: withRole ? '10' : null, maxlength: '256' });
    const streamer = el('input', { id: 'streamer', name: 'streamer', type: 'checkbox' });
    const submit = el('button', { type: 'submit', id: 'submit' }, t(submitKey));
    const form = el('form', { class: 'account-form', id: page + '-form' },
      el('label', {}, t('form.username'), username),
      el('label', {}, t('form.password'), password),
      withRole ? el('label', { class: 'check' }, streamer, ' ', t('form.streamer')) : null,
      err, submit);
    return { form, username, password, streamer, err, submit };
  };

  if (page === 'login' || page === 'signup') {
    const signup = page === 'signup';
    const f = credentials(signup ? 'form.signup' : 'form.login', signup);
    app.append(el('h1', {}, t(signup ? 'title.signup' : 'title.login')), f.form,
      el('p', {}, el('a', { href: signup ? '/login' : '/signup' }, t(signup ? 'form.have' : 'form.nothave'))));
    f.form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      f.err.textContent = '';
      f.submit.disabled = true;
      try {
        if (signup) {
          await P.api('POST', '/api/v1/users', { username: f.username.value.trim(), password: f.password.value, role: f.streamer.checked ? 'streamer' : 'viewer' });
        }
        await P.login(f.username.value.trim(), f.password.value);
        location.assign(signup && f.streamer.checked ? '/dashboard' : next());
      } catch (e) {
        const fields = e.body && e.body.fields ? e.body.fields.map((x) => x.field + ': ' + x.message).join('; ') : '';
        f.err.textContent = P.errorText(e) + (fields ? ' (' + fields + ')' : '');
      } finally {
        f.submit.disabled = false;
      }
    });
    return;
  }

  // /account
  (async () => {
    const me = await P.me();
    if (!me) { location.assign('/login?next=/account'); return; }
    const logout = el('button', { type: 'button', id: 'logout' }, t('account.logout'));
    logout.addEventListener('click', async () => { await P.logout(); location.assign('/'); });
    const tokens = el('ul', { id: 'tokens' });
    app.append(el('h1', {}, t('title.account')),
      el('p', { id: 'whoami' }, t('account.user', { user: me.username, role: me.role })),
      el('p', {}, el('a', { href: '/' + encodeURIComponent(me.username) }, '/' + me.username)),
      logout,
      el('h2', {}, t('account.sessions')), tokens);
    const load = async () => {
      let list = [];
      try { list = await P.api('GET', '/api/v1/tokens'); } catch (e) { P.notice(app, P.errorText(e), 'error'); return; }
      P.clear(tokens);
      if (!list.length) tokens.append(el('li', {}, t('account.none')));
      for (const tk of list) {
        const revoke = el('button', { type: 'button', class: 'revoke' }, t('account.revoke'));
        revoke.addEventListener('click', async () => {
          try { await P.api('DELETE', '/api/v1/tokens/' + encodeURIComponent(tk.id)); load(); } catch (e) { P.notice(app, P.errorText(e), 'error'); }
        });
        tokens.append(el('li', {}, (tk.name || tk.prefix || tk.id) + ' — ' + t('account.created', { when: P.time(tk.created_at) }) + ' ', revoke));
      }
    };
    load();
  })();
})();
