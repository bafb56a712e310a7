// Donation alerts as the overlay and the dashboard's preview show them: one at a time
// (a queue, never overlapping), the variant chosen by amount, an animation in and out, a
// sound, and the message read aloud by the browser's speech synthesis.
'use strict';
(function () {
  const P = window.Potok;
  const { el, t } = P;
  const ANIMATIONS = ['fade', 'slide', 'bounce', 'zoom'];
  const OUT_MS = 600;

  // The variant for `amount`: the one with the highest min_amount not above it.
  P.pickVariant = (variants, amount) => {
    let best = null;
    for (const v of variants || []) if (v.min_amount <= amount && (!best || v.min_amount > best.min_amount)) best = v;
    return best;
  };

  const fill = (template, vars) => {
    let s = template || t('overlay.alert.default');
    vars = { ...vars, donor: vars.name };
    for (const [k, v] of Object.entries(vars)) s = s.split('{' + k + '}').join(v);
    return s;
  };

  let audio = null;
  const beep = () => {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = 880;
      g.gain.setValueAtTime(0.2, audio.currentTime);
      g.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.6);
      o.connect(g).connect(audio.destination);
      o.start();
      o.stop(audio.currentTime + 0.6);
    } catch (_) { /* no audio on this host */ }
  };
  const sound = (url) => {
    if (url && /^(https:\/\/|\/)/.test(url) && !url.startsWith('//')) {
      const a = new Audio(url);
      a.play().catch(beep);
    } else beep();
  };
  // The browser's voice when it has one; else the server's (espeak-ng) for this donation,
  // when the overlay says where (`speechUrl`).
  const speak = (text, serverUrl) => {
    const voices = window.speechSynthesis && typeof SpeechSynthesisUtterance !== 'undefined' ? window.speechSynthesis.getVoices() : [];
    if (!voices.length) {
      if (serverUrl) { const a = new Audio(serverUrl); a.play().catch(() => {}); }
      return;
    }
    if (!text) return;
    try {
      const u = new SpeechSynthesisUtterance(text);
      u.lang = P.lang === 'ru' ? 'ru-RU' : 'en-US';
      window.speechSynthesis.speak(u);
    } catch (_) { /* no voices */ }
  };

  // root: the element alerts appear in; settings: AlertSettings (variants, tts) for
  // events that carry no chosen variant; opts.speechUrl(donation): the server's spoken
  // alert, for browsers without a voice.
  P.AlertQueue = function (root, settings, opts) {
    const speechUrl = (opts && opts.speechUrl) || null;
    const queue = [];
    let busy = false;
    let shown = 0;
    const next = () => {
      if (busy || !queue.length) return;
      busy = true;
      const { donation, alert } = queue.shift();
      const amount = P.money(donation.amount, donation.currency);
      const name = P.anonymous(donation) ? t('overlay.anonymous') : (donation.donor_name || t('overlay.anonymous'));
      const variant = (alert && alert.variant) || P.pickVariant((settings || {}).variants, donation.amount) || {};
      const anim = ANIMATIONS.includes(variant.animation) ? variant.animation : 'fade';
      const duration = Math.min(Math.max(Number(variant.duration_ms) || 6000, 1000), 60000);
      const gift = donation.gift;
      const box = el('div', { class: 'alert anim-' + anim, role: 'alert', 'data-id': donation.id || '', 'data-seq': String(++shown) },
        gift && gift.image_url && /^(https:\/\/|\/)/.test(gift.image_url) ? el('img', { class: 'alert-gift', src: gift.image_url, alt: '' }) : null,
        el('p', { class: 'alert-title' }, fill(variant.text_template, { name, amount, message: donation.message || '' })),
        el('p', { class: 'alert-line' }, el('span', { class: 'alert-name' }, name), ' · ', el('span', { class: 'alert-amount' }, amount)),
        donation.message ? el('p', { class: 'alert-message' }, donation.message) : null);
      root.append(box);
      requestAnimationFrame(() => box.classList.add('in'));
      sound(variant.sound);
      const tts = alert ? !!alert.tts : !!(settings && settings.tts && settings.tts.enabled && donation.amount >= (settings.tts.min_amount || 0));
      if (tts) speak(name + ': ' + (donation.message || amount), speechUrl && donation.id ? speechUrl(donation) : null);
      setTimeout(() => {
        box.classList.remove('in');
        box.classList.add('out');
        setTimeout(() => { box.remove(); busy = false; next(); }, OUT_MS);
      }, duration);
    };
    return {
      push: (donation, alert) => { if (queue.length < 100) queue.push({ donation, alert }); next(); },
      setSettings: (s) => { settings = s; },
      get pending() { return queue.length + (busy ? 1 : 0); },
    };
  };

  // A goal bar: title, progress, amounts.
  P.goalBar = (raw) => {
    const goal = P.goal(raw);
    const pct = goal && goal.target > 0 ? Math.min(100, (100 * goal.current) / goal.target) : 0;
    const fillEl = el('div', { class: 'goal-fill' });
    fillEl.style.width = pct.toFixed(2) + '%';
    return el('div', { class: 'goal', 'data-current': String(goal ? goal.current : 0), 'data-pct': pct.toFixed(2) },
      el('p', { class: 'goal-title' }, goal ? goal.title : ''),
      el('div', { class: 'goal-track' }, fillEl),
      el('p', { class: 'goal-amounts' }, goal ? t('dash.goal.progress', { current: P.money(goal.current, goal.currency), target: P.money(goal.target, goal.currency) }) : ''));
  };
})();
