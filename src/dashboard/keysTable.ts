// Keys at a glance: one row per key with its health, days to expiry, hubs per state and last rotation.
import type { KeyOverview } from '../application';
import type { KeyList, Wire } from './api';
import { h } from './dom';
import { daysUntil, plural, shortVersion, time, versionOfId } from './format';

type Key = Wire<KeyOverview>;

const HEALTH_WORDS = { green: 'Healthy', amber: 'Attention', red: 'At risk' } as const;

export function keysTable(list: KeyList, selected: string | undefined, now: number, select: (keyId: string) => void) {
  const rows = (list.keys as Key[]).map((key) => keyRow(key, key.keyId === selected, now, select));
  return h(
    'div',
    {},
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        { class: 'keys' },
        h('caption', { class: 'visually-hidden' }, 'Keys the rotator manages'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['Health', 'Key', 'Current version', 'Expires', 'Next rotation', 'Hubs', 'Last rotation'].map((t) =>
              h('th', { scope: 'col' }, t),
            ),
          ),
        ),
        h(
          'tbody',
          {},
          rows.length
            ? rows
            : h(
                'tr',
                {},
                h(
                  'td',
                  { colspan: 7, class: 'empty' },
                  'No key found: no hub uses a CMK, and no key in the allowed vaults has a rotation policy.',
                ),
              ),
        ),
      ),
    ),
    list.problems.length
      ? h(
          'ul',
          { class: 'problems', role: 'alert' },
          list.problems.map((p) => h('li', {}, `${p.keyId}: ${p.error.message} [${p.error.code}]`)),
        )
      : null,
    list.unmanaged.length
      ? h(
          'p',
          { class: 'note' },
          'Hubs also use keys in vaults this rotator does not manage: ',
          list.unmanaged.map((u) => `${u.keyId} (${plural(u.hubs, 'hub')})`).join(', '),
          '.',
        )
      : null,
  );
}

function keyRow(key: Key, selected: boolean, now: number, select: (keyId: string) => void): HTMLTableRowElement {
  const current = key.versions.find((v) => v.id === key.latestUsableVersion);
  const days = daysUntil(current?.expiresOn, now);
  const counts = (['current', 'behind', 'unusable', 'failed'] as const).filter(
    (s) => key.hubs[s] > 0 || s === 'current',
  );
  return h(
    'tr',
    {
      class: `key ${key.health.level}${selected ? ' selected' : ''}`,
      'data-key-id': key.keyId,
      'aria-selected': selected ? 'true' : undefined,
    },
    h(
      'td',
      {},
      h(
        'span',
        { class: `health ${key.health.level}`, title: key.health.reasons.join('\n') || 'Nothing needs attention.' },
        HEALTH_WORDS[key.health.level],
      ),
      key.health.reasons.length ? h('div', { class: 'reasons' }, key.health.reasons.join('; ')) : null,
    ),
    h(
      'th',
      { scope: 'row' },
      h('button', { type: 'button', class: 'link', onclick: () => select(key.keyId), title: key.keyId }, key.name),
      h('div', { class: 'sub' }, key.vaultUrl.replace('https://', '')),
    ),
    h(
      'td',
      { class: 'mono', title: key.latestUsableVersion ?? '' },
      shortVersion(versionOfId(key.latestUsableVersion ?? '')) || 'none',
    ),
    h(
      'td',
      {},
      current?.expiresOn
        ? [
            h('span', { class: 'days' }, days! < 0 ? 'expired' : `${plural(days!, 'day')}`),
            ' · ',
            time(current.expiresOn, { dateOnly: true }),
          ]
        : 'no expiry',
    ),
    h('td', {}, key.nextRotation ? time(key.nextRotation, { dateOnly: true }) : '—'),
    h(
      'td',
      { class: 'counts' },
      counts.map((s) => h('span', { class: `chip ${s}`, 'data-standing': s }, `${key.hubs[s]} ${s}`)),
    ),
    h(
      'td',
      {},
      key.lastRotation ? [time(key.lastRotation.time), ` (${key.lastRotation.trigger})`] : 'not by this rotator yet',
    ),
  );
}
