// The dashboard's state: the CSRF token of the session (sessionStorage, this tab only), the
// signed-in admin, the chosen time zone (localStorage), the render generation and the refresh
// timers of the current page.

export const CSRF_KEY = 'ccp.csrf';
export const TZ_KEY = 'ccp.tz';

export const BROWSER_TZ = (() => {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch (_) {
    return 'UTC';
  }
})();

export const state = {
  csrf: sessionStorage.getItem(CSRF_KEY),
  admin: null,
  tz: localStorage.getItem(TZ_KEY) || BROWSER_TZ,
  generation: 0,
  timers: [],
  lastPath: null,
};

export function stopTimers() {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
}
