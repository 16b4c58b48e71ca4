// The operator dashboard: keys at a glance, a key's timeline, hubs and activity, and dry-run-first actions. It reads
// the JSON routes the operators already use and refreshes itself while the page is visible.
import { actions } from './actions';
import { auditTable, jobProgress } from './activity';
import { ApiError, createApi } from './api';
import type { AuditPageView, KeyList, KeyStatus } from './api';
import { h } from './dom';
import { time } from './format';
import { HubTable } from './hubTable';
import { keysTable } from './keysTable';
import { timeline } from './timeline';

/**
 * Each refresh lists the hubs of every subscription (ARM reads, from the same budget rotations draw on): often
 * while a job moves hubs, so it can be watched live, and rarely otherwise.
 */
const REFRESH_MS = { moving: 5_000, idle: 15_000 };
const AUDIT_PAGE = 20;
/**
 * The function key the operator opened the page with (`?code=`, as Azure Functions accepts it). It stays in the
 * address bar, where the operator put it: the page itself needs it on every load, and no request of the page sends
 * it anywhere else (no referrer, no third-party origin).
 */
const functionKey = new URL(location.href).searchParams.get('code') ?? undefined;

const api = createApi(functionKey);
const sections = {
  errors: document.getElementById('errors')!,
  updated: document.getElementById('updated')!,
  keys: document.getElementById('keys')!,
  key: document.getElementById('key')!,
};
const hubTable = new HubTable();

let selected: string | undefined = decodeURIComponent(location.hash.replace(/^#key=/, '')) || undefined;
/** Continuation tokens of the audit pages shown before the current one (empty: the newest page). */
let auditTrail: (string | undefined)[] = [];
let auditToken: string | undefined;
let keyPanelFor: string | undefined;
let timer: number | undefined;

function showError(error: unknown) {
  const message = error instanceof ApiError ? error.message : 'Something went wrong in the page; reload it.';
  sections.errors.replaceChildren(h('p', { class: 'error' }, message));
}

async function refresh() {
  window.clearTimeout(timer);
  let moving = false;
  try {
    let list = await api.get<KeyList>('keys');
    if (!selected || !list.keys.some((k) => k.keyId === selected)) {
      selected = (list.keys.find((k) => k.health.level === 'red') ?? list.keys[0])?.keyId;
    }
    const now = Date.now();
    if (selected) {
      const [status, audit] = await Promise.all([
        api.get<KeyStatus>('keys/status', { keyId: selected }),
        api.get<AuditPageView>('rotations', {
          keyId: selected,
          limit: String(AUDIT_PAGE),
          continuationToken: auditToken,
        }),
      ]);
      list = withStatus(list, status);
      showKey(selected, status, audit, now);
    } else sections.key.replaceChildren();
    moving = list.keys.some((k) => k.job && !k.job.done);
    sections.keys.replaceChildren(keysTable(list, selected, now, selectKey));
    sections.errors.replaceChildren();
    sections.updated.replaceChildren('Updated ', time(new Date(now).toISOString()));
  } catch (error) {
    showError(error);
  } finally {
    if (!document.hidden) timer = window.setTimeout(() => void refresh(), moving ? REFRESH_MS.moving : REFRESH_MS.idle);
  }
}

/**
 * The selected key's row as told by the status read after the listing, so that its health and counts never
 * disagree with the hub table beside it (a hub may fail between the two reads).
 */
function withStatus(list: KeyList, status: KeyStatus): KeyList {
  const keys = list.keys.map((key) => {
    if (key.keyId !== status.keyId) return key;
    const hubs = Object.fromEntries(Object.keys(key.hubs).map((standing) => [standing, 0])) as typeof key.hubs;
    for (const hub of status.hubs) hubs[hub.standing] += 1;
    return { ...key, ...status, hubs };
  });
  return { ...list, keys };
}

function selectKey(keyId: string) {
  selected = keyId;
  auditTrail = [];
  auditToken = undefined;
  history.replaceState(null, '', `${location.pathname}${location.search}#key=${encodeURIComponent(keyId)}`);
  void refresh();
}

function showKey(keyId: string, status: KeyStatus, audit: AuditPageView, now: number) {
  hubTable.show(status.hubs);
  if (keyPanelFor !== keyId) {
    keyPanelFor = keyId;
    sections.key.replaceChildren(keyPanel(keyId));
  }
  const name = keyId.split('/').pop() ?? keyId;
  sections.key.querySelector('#key-title')!.replaceChildren(`Key ${name}`);
  sections.key.querySelector('#timeline')!.replaceChildren(timeline(status, now));
  sections.key.querySelector('#job')!.replaceChildren(status.job ? jobProgress(status.job) : '');
  sections.key.querySelector('#audit')!.replaceChildren(auditTable(audit.records), auditPager(audit));
}

/** The parts of a key's panel that stay put across refreshes (the hub table keeps its filter, the plan its result). */
function keyPanel(keyId: string): HTMLElement {
  const name = keyId.split('/').pop() ?? keyId;
  return h(
    'div',
    {},
    h('h2', { id: 'key-title' }, `Key ${name}`),
    h(
      'section',
      { 'aria-labelledby': 'timeline-title' },
      h('h3', { id: 'timeline-title' }, 'Versions and expiry'),
      h('div', { id: 'timeline' }),
      h(
        'p',
        { class: 'legend-line' },
        h('span', { class: 'swatch live' }),
        ' usable ',
        h('span', { class: 'swatch current' }),
        ' current ',
        h('span', { class: 'swatch expired' }),
        ' expired or disabled ',
        h('span', { class: 'swatch notify' }),
        ' notify window ',
      ),
    ),
    h(
      'section',
      { 'aria-labelledby': 'actions-title' },
      h('h3', { id: 'actions-title' }, 'Actions'),
      actions({
        api,
        keyId,
        keyName: name,
        onDone: () => {
          auditTrail = [];
          auditToken = undefined;
          void refresh();
        },
        onError: showError,
      }),
    ),
    h('section', { 'aria-labelledby': 'hubs-title' }, h('h3', { id: 'hubs-title' }, 'Hubs'), hubTable.element),
    h(
      'section',
      { 'aria-labelledby': 'activity-title' },
      h('h3', { id: 'activity-title' }, 'Activity'),
      h('div', { id: 'job' }),
      h('div', { id: 'audit' }),
    ),
  );
}

function auditPager(page: AuditPageView): HTMLElement {
  return h(
    'div',
    { class: 'pager' },
    h(
      'button',
      {
        type: 'button',
        disabled: auditTrail.length === 0,
        onclick: () => {
          auditToken = auditTrail.pop();
          void refresh();
        },
      },
      '← Newer',
    ),
    h(
      'button',
      {
        type: 'button',
        disabled: !page.continuationToken,
        onclick: () => {
          auditTrail.push(auditToken);
          auditToken = page.continuationToken;
          void refresh();
        },
      },
      'Older →',
    ),
  );
}

document.getElementById('refresh')!.addEventListener('click', () => void refresh());
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) void refresh();
});
window.addEventListener('error', () => showError(undefined));
void refresh();
