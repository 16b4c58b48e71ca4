// The hubs of a key: sortable, filterable, one page at a time so a fleet of thousands renders as fast as a few.
import type { HubView } from '../application';
import type { Wire } from './api';
import { h } from './dom';
import { duration, plural, shortVersion, time, versionOfId } from './format';

type Hub = Wire<HubView>;
type Column = 'hub' | 'subscription' | 'resourceGroup' | 'version' | 'standing' | 'moved' | 'error';

export const PAGE_SIZE = 50;

const COLUMNS: { id: Column; title: string; value: (hub: Hub) => string }[] = [
  { id: 'hub', title: 'Hub', value: (hub) => hub.hubName },
  { id: 'subscription', title: 'Subscription', value: (hub) => hub.subscriptionId },
  { id: 'resourceGroup', title: 'Resource group', value: (hub) => hub.resourceGroup },
  { id: 'version', title: 'Version', value: (hub) => hub.keyIdentifiers.map(versionOfId).join(', ') },
  { id: 'standing', title: 'State', value: (hub) => hub.standing },
  { id: 'moved', title: 'Last move', value: (hub) => hub.move?.finishedAt ?? '' },
  { id: 'error', title: 'Last error', value: (hub) => errorText(hub) },
];

function errorText(hub: Hub): string {
  const move = hub.move;
  if (!move?.errorCode && !move?.reason) return '';
  return [move.errorCode, move.reason].filter(Boolean).join(': ');
}

export class HubTable {
  private filter = '';
  private standing = '';
  private sortBy: Column = 'standing';
  private descending = false;
  private page = 0;
  private hubs: Hub[] = [];
  readonly element = h('div', { class: 'hub-table' });

  show(hubs: Hub[]): void {
    const started = performance.now();
    this.hubs = hubs;
    this.render();
    // User Timing: how long a render of the whole fleet takes, for devtools and the browser tests.
    performance.measure('hub-table-render', { start: started, detail: { hubs: hubs.length } });
  }

  private visible(): Hub[] {
    const needle = this.filter.trim().toLowerCase();
    const column = COLUMNS.find((c) => c.id === this.sortBy) ?? COLUMNS[0]!;
    const rank = (hub: Hub) => (this.sortBy === 'standing' ? STANDING_ORDER.indexOf(hub.standing) : 0);
    return this.hubs
      .filter((hub) => !this.standing || hub.standing === this.standing)
      .filter((hub) => !needle || COLUMNS.some((c) => c.value(hub).toLowerCase().includes(needle)))
      .sort((a, b) => {
        const order =
          rank(a) - rank(b) || column.value(a).localeCompare(column.value(b)) || a.hubName.localeCompare(b.hubName);
        return this.descending ? -order : order;
      });
  }

  private readonly count = h('span', { class: 'count', role: 'status' });
  private readonly rows = h('div', { class: 'scroll' });
  private readonly pager = h('div', { class: 'pager' });

  constructor() {
    // The controls are built once: re-rendering them would take the caret out of the filter while one types.
    const controls = h(
      'div',
      { class: 'controls' },
      h(
        'label',
        {},
        'Filter ',
        h('input', {
          type: 'search',
          placeholder: 'hub, subscription, group, version…',
          'aria-controls': 'hub-rows',
          oninput: (e: Event) => {
            this.filter = (e.target as HTMLInputElement).value;
            this.page = 0;
            this.render();
          },
        }),
      ),
      h(
        'label',
        {},
        'State ',
        h(
          'select',
          {
            'aria-controls': 'hub-rows',
            onchange: (e: Event) => {
              this.standing = (e.target as HTMLSelectElement).value;
              this.page = 0;
              this.render();
            },
          },
          ['', ...STANDING_ORDER].map((s) => h('option', { value: s }, s || 'all')),
        ),
      ),
      this.count,
    );
    this.element.append(controls, this.rows, this.pager);
  }

  private render(): void {
    const rows = this.visible();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    this.page = Math.min(this.page, pages - 1);
    const pageRows = rows.slice(this.page * PAGE_SIZE, (this.page + 1) * PAGE_SIZE);
    const focused = document.activeElement?.getAttribute('data-focus-id');
    this.count.textContent = this.summary(rows.length);
    this.rows.replaceChildren(
      h(
        'table',
        { id: 'hub-rows' },
        h('caption', { class: 'visually-hidden' }, 'Hubs that use this key'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            COLUMNS.map((c) => this.header(c)),
          ),
        ),
        h(
          'tbody',
          {},
          pageRows.length
            ? pageRows.map((hub) => hubRow(hub))
            : h('tr', {}, h('td', { colspan: COLUMNS.length, class: 'empty' }, 'No hub matches.')),
        ),
      ),
    );
    this.pager.replaceChildren(
      h(
        'button',
        { type: 'button', disabled: this.page === 0, 'data-focus-id': 'hub-prev', onclick: () => this.turn(-1) },
        '← Previous',
      ),
      h('span', {}, `Page ${this.page + 1} of ${pages}`),
      h(
        'button',
        { type: 'button', disabled: this.page >= pages - 1, 'data-focus-id': 'hub-next', onclick: () => this.turn(1) },
        'Next →',
      ),
    );
    // The table and pager are rebuilt: keep the keyboard on the button it was on.
    if (focused) this.element.querySelector<HTMLElement>(`[data-focus-id="${focused}"]`)?.focus();
  }

  private header(column: (typeof COLUMNS)[number]): HTMLTableCellElement {
    const sorted = column.id === this.sortBy;
    return h(
      'th',
      { scope: 'col', 'aria-sort': sorted ? (this.descending ? 'descending' : 'ascending') : undefined },
      h(
        'button',
        {
          type: 'button',
          class: 'sort',
          'data-focus-id': `sort-${column.id}`,
          onclick: () => {
            this.descending = sorted ? !this.descending : false;
            this.sortBy = column.id;
            this.render();
          },
        },
        column.title,
        h('span', { 'aria-hidden': 'true' }, sorted ? (this.descending ? ' ▼' : ' ▲') : ''),
      ),
    );
  }

  private summary(matching: number): string {
    if (!this.hubs.length) return 'No hub uses this key.';
    const first = this.page * PAGE_SIZE + 1;
    const last = Math.min(matching, (this.page + 1) * PAGE_SIZE);
    const of =
      matching === this.hubs.length ? plural(matching, 'hub') : `${matching} of ${plural(this.hubs.length, 'hub')}`;
    return matching
      ? `${first.toLocaleString()}–${last.toLocaleString()} of ${of}`
      : `0 of ${plural(this.hubs.length, 'hub')}`;
  }

  private turn(by: number): void {
    this.page += by;
    this.render();
  }
}

export const STANDING_ORDER = ['unusable', 'failed', 'behind', 'current'] as const;

function hubRow(hub: Hub): HTMLTableRowElement {
  const move = hub.move;
  return h(
    'tr',
    { class: `hub ${hub.standing}`, 'data-hub-id': hub.hubId },
    h('th', { scope: 'row', title: hub.hubId }, hub.hubName),
    h('td', { class: 'mono' }, hub.subscriptionId),
    h('td', {}, hub.resourceGroup),
    h(
      'td',
      { class: 'mono', title: hub.keyIdentifiers.join('\n') },
      hub.keyIdentifiers.map((id) => shortVersion(versionOfId(id))).join(', '),
    ),
    h('td', {}, h('span', { class: `chip ${hub.standing}` }, hub.standing)),
    h(
      'td',
      {},
      move?.finishedAt
        ? [time(move.finishedAt), move.durationMs !== undefined ? ` (${duration(move.durationMs)})` : '']
        : move
          ? move.result
          : '—',
    ),
    h('td', { class: 'error-text' }, errorText(hub) || ''),
  );
}
