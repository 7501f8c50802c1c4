// The router: one line per page (a pattern of the address after #, its view, its nav entry), and
// the render of the current address.

import { viewAdmin, viewAdmins } from './admins.js';
import { viewAudit } from './audit.js';
import { viewCircuits } from './circuits.js';
import { closeAllDialogs } from './dialogs.js';
import { viewModels } from './models.js';
import { viewOverview } from './overview.js';
import { viewRequests } from './requests.js';
import { state, stopTimers } from './state.js';
import { viewTeam, viewTeams } from './teams.js';
import { errorBox, pageHead } from './ui.js';
import { viewUsage } from './usage.js';
import { viewUser } from './user.js';
import { viewUsers } from './users.js';
import { $, clear } from '../shared/dom.js';

const routes = [
  [/^\/?$/, viewOverview, 'overview'],
  [/^\/users\/?$/, viewUsers, 'users'],
  [/^\/users\/(usr_[0-9A-Za-z]+)$/, viewUser, 'users'],
  [/^\/teams\/?$/, viewTeams, 'teams'],
  [/^\/teams\/(team_[0-9A-Za-z]+)$/, viewTeam, 'teams'],
  [/^\/usage\/?$/, viewUsage, 'usage'],
  [/^\/audit\/?$/, viewAudit, 'audit'],
  [/^\/requests\/?$/, viewRequests, 'requests'],
  [/^\/requests\/(req_[0-9A-Za-z]+)$/, viewRequests, 'requests'],
  [/^\/circuits\/?$/, viewCircuits, 'circuits'],
  [/^\/models\/?$/, viewModels, 'models'],
  [/^\/admins\/?$/, viewAdmins, 'admins'],
  [/^\/admins\/(adm_[0-9A-Za-z]+)$/, viewAdmin, 'admins'],
];

function parseHash() {
  let raw = location.hash.replace(/^#/, '');
  try {
    raw = decodeURI(raw);
  } catch (_) {
    // Keep the raw text: the router shows "not found".
  }
  raw = raw || '/';
  const i = raw.indexOf('?');
  return { path: i < 0 ? raw : raw.slice(0, i), params: new URLSearchParams(i < 0 ? '' : raw.slice(i + 1)) };
}

export async function render() {
  stopTimers();
  closeAllDialogs();
  if (!state.admin) return;
  const { path, params } = parseHash();
  // A team lead has one page: their team's (the API refuses them the rest).
  const lead = state.admin.team_id;
  if (lead && path !== `/teams/${lead}`) {
    location.replace(`#/teams/${lead}`);
    return;
  }
  const gen = ++state.generation;
  const main = clear($('#main'));
  const route = routes.find((r) => r[0].test(path));
  for (const a of document.querySelectorAll('#nav a')) {
    if (route && a.dataset.nav === route[2]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const ctx = { main, params, path, arg: route ? path.match(route[0])[1] : null, alive: () => gen === state.generation };
  const moved = state.lastPath !== path;
  state.lastPath = path;
  if (!route) {
    main.append(...pageHead('Page not found'), errorBox(new Error(`There is no page ${path}.`)));
    return;
  }
  const running = route[1](ctx);
  const heading = $('h1', main);
  document.title = heading ? `${heading.textContent} · ClaudeCodeProxy` : 'ClaudeCodeProxy';
  if (moved && heading) heading.focus();
  try {
    await running;
  } catch (e) {
    if (ctx.alive()) main.append(errorBox(e));
  }
}
