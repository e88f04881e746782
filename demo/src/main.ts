// The demo SPA: every call goes through the browser client that cloakroom serves itself, so the
// page shows exactly what an SPA of yours would do. No framework, no token in sight.
import type * as ClientModule from '../../packages/client/index.js';
import type { CloakroomError, SessionAnswer } from '../../packages/client/index.js';

// Loaded from cloakroom at run time (same file as packages/client); the import above is types only.
const clientUrl = '/auth/client.js';
const { createClient } = (await import(clientUrl)) as typeof ClientModule;

function element<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from index.html`);
  return el as T;
}

const ui = {
  signin: element<HTMLElement>('signin'),
  form: element<HTMLFormElement>('signin-form'),
  email: element<HTMLInputElement>('email'),
  password: element<HTMLInputElement>('password'),
  totpRow: element<HTMLElement>('totp-row'),
  totp: element<HTMLInputElement>('totp'),
  remember: element<HTMLInputElement>('remember'),
  message: element<HTMLElement>('signin-message'),
  account: element<HTMLElement>('account'),
  userName: element<HTMLElement>('user-name'),
  userEmail: element<HTMLElement>('user-email'),
  expiresAt: element<HTMLElement>('expires-at'),
  callApi: element<HTMLButtonElement>('call-api'),
  apiResult: element<HTMLElement>('api-result'),
  invoice: element<HTMLAnchorElement>('invoice-link'),
  portal: element<HTMLAnchorElement>('portal-link'),
  signout: element<HTMLButtonElement>('signout'),
  signoutEverywhere: element<HTMLButtonElement>('signout-everywhere'),
  ended: element<HTMLElement>('session-ended'),
};

const client = createClient({
  onSessionEnded: (code) => {
    ui.ended.textContent = code === 'session_expired'
      ? 'Your session has expired. Sign in again.'
      : 'You are signed out (the session ended elsewhere). Sign in again.';
    ui.ended.dataset['code'] = code;
    ui.ended.hidden = false;
    showSignIn();
  },
});

ui.invoice.href = client.downloadUrl('/api/public/billing/invoices/42/pdf');
ui.portal.href = client.portalUrl('/en/invoices');

function say(text: string, isError = false): void {
  ui.message.textContent = text;
  ui.message.classList.toggle('error', isError);
}

function showSignIn(): void {
  ui.account.hidden = true;
  ui.signin.hidden = false;
  ui.apiResult.textContent = '';
}

function showSession(answer: SessionAnswer): void {
  if (!answer.authenticated) return showSignIn();
  ui.userName.textContent = answer.user.fullName ?? String(answer.user.id);
  ui.userEmail.textContent = answer.user.email;
  const ends = new Date(answer.expiresAt);
  ui.expiresAt.textContent = ends.toLocaleString();
  ui.expiresAt.dataset['iso'] = answer.expiresAt;
  ui.signin.hidden = true;
  ui.account.hidden = false;
}

function isClientError(err: unknown): err is CloakroomError {
  return err instanceof Error && typeof (err as Partial<CloakroomError>).code === 'string';
}

ui.form.addEventListener('submit', async (event) => {
  event.preventDefault();
  say('Signing in…');
  try {
    await client.login({
      email: ui.email.value,
      password: ui.password.value,
      remember: ui.remember.checked,
      ...(ui.totpRow.hidden ? {} : { totp: ui.totp.value }),
    });
    ui.ended.hidden = true;
    ui.totpRow.hidden = true;
    ui.password.value = '';
    ui.totp.value = '';
    say('');
    showSession(await client.session());
  } catch (err) {
    if (!isClientError(err)) return say('cloakroom could not be reached.', true);
    switch (err.code) {
      case 'two_factor_required':
        ui.totpRow.hidden = false;
        ui.totp.focus();
        return say('Enter the code from your authenticator app.');
      case 'must_reset_password':
        // The reset token is a credential: an SPA hands it to its reset page, never shows it.
        return say('You must choose a new password before signing in. Follow the reset link we sent you.', true);
      case 'invalid_grant':
        return say(err.message || 'Wrong email or password.', true);
      case 'rate_limited':
        return say('Too many attempts. Wait a little and try again.', true);
      default:
        return say(`${err.message} (${err.code})`, true);
    }
  }
});

ui.callApi.addEventListener('click', async () => {
  const res = await client.fetch('/api/auth/me');
  if (!res.ok) {
    ui.apiResult.textContent = `${res.status} ${res.statusText}`;
    return;
  }
  const me = (await res.json()) as Record<string, unknown>;
  const shown = Object.fromEntries(['FullName', 'Email', 'DefaultBusinessName', 'DefaultCurrencyCode'].map((k) => [k, me[k]]));
  ui.apiResult.textContent = `GET /api/auth/me → ${res.status}\n${JSON.stringify(shown, null, 2)}`;
});

async function signOut(everywhere: boolean): Promise<void> {
  const result = await client.logout({ everywhere });
  if (result.logoutUrl) {
    location.assign(result.logoutUrl);
    return;
  }
  say(everywhere ? 'Signed out on every device.' : 'Signed out.');
  showSignIn();
}
ui.signout.addEventListener('click', () => void signOut(false));
ui.signoutEverywhere.addEventListener('click', () => void signOut(true));

showSession(await client.session());
document.body.dataset['ready'] = 'true';
