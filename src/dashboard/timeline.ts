// The expiry timeline: each version a bar from nbf (or creation) to expiry, today, the current version's notify
// window with the planned rotation, and which versions the hubs use.
import type { KeyStatus } from './api';
import { svg } from './dom';
import { DAY_MS, plural, shortVersion } from './format';

/** The newest versions drawn; older ones are counted under the chart. */
export const TIMELINE_VERSIONS = 8;
const WIDTH = 1000;
const LABEL = 170;
const ROW = 30;
const TOP = 28;
const BOTTOM = 26;

const utc = (ms: number) => new Date(ms).toISOString().slice(0, 10);

export function timeline(status: KeyStatus, now: number): SVGSVGElement {
  const shown = status.versions.slice(0, TIMELINE_VERSIONS);
  const start = (v: KeyStatus['versions'][number]) => new Date(v.notBefore ?? v.createdOn).getTime();
  const hubsOn = new Map<string, number>();
  for (const hub of status.hubs) {
    for (const id of hub.keyIdentifiers) {
      const version = id.split('/')[5]?.toLowerCase() ?? '';
      hubsOn.set(version, (hubsOn.get(version) ?? 0) + 1);
    }
  }
  const current = status.versions.find((v) => v.id === status.latestUsableVersion);
  const notifyAt = status.nextRotation ? new Date(status.nextRotation).getTime() : undefined;
  const ends = shown.flatMap((v) => (v.expiresOn ? [new Date(v.expiresOn).getTime()] : []));
  const first = Math.min(now - 7 * DAY_MS, ...shown.map(start));
  const last = Math.max(now + 30 * DAY_MS, ...ends, notifyAt ?? 0);
  const span = last - first || DAY_MS;
  const from = first - span * 0.03;
  const to = last + span * 0.03;
  const x = (ms: number) => LABEL + ((ms - from) / (to - from)) * (WIDTH - LABEL - 10);
  const height = TOP + shown.length * ROW + BOTTOM;

  const rows = shown.map((v, i) => {
    const y = TOP + i * ROW;
    const hubs = hubsOn.get(v.version.toLowerCase()) ?? 0;
    const expired = !!v.expiresOn && new Date(v.expiresOn).getTime() <= now;
    const kind = !v.enabled ? 'disabled' : expired ? 'expired' : v.live ? 'live' : 'pending';
    const end = v.expiresOn ? new Date(v.expiresOn).getTime() : to;
    const isCurrent = v.id === status.latestUsableVersion;
    const describe = [
      `version ${v.version}`,
      `valid from ${utc(start(v))}${v.expiresOn ? ` to ${utc(end)}` : ', no expiry'} (UTC)`,
      kind,
      isCurrent ? 'current' : '',
      hubs ? `${plural(hubs, 'hub')} use it` : 'no hub uses it',
    ]
      .filter(Boolean)
      .join(' · ');
    return svg(
      'g',
      { class: `version ${kind}${isCurrent ? ' current' : ''}${hubs ? ' in-use' : ''}`, 'data-version': v.version },
      svg('title', {}, describe),
      svg(
        'text',
        { x: LABEL - 8, y: y + ROW / 2 + 4, 'text-anchor': 'end', class: 'label' },
        `${shortVersion(v.version)}${isCurrent ? ' (current)' : ''}`,
      ),
      svg('rect', {
        x: x(start(v)),
        y: y + 6,
        width: Math.max(2, x(end) - x(start(v))),
        height: ROW - 12,
        rx: 3,
        class: 'bar',
      }),
      hubs
        ? svg(
            'text',
            { x: Math.min(x(end), WIDTH - 12) - 6, y: y + ROW / 2 + 4, 'text-anchor': 'end', class: 'hubs' },
            plural(hubs, 'hub'),
          )
        : null,
    );
  });

  const markers = [];
  if (current?.expiresOn && notifyAt !== undefined) {
    const expiry = new Date(current.expiresOn).getTime();
    markers.push(
      svg(
        'g',
        { class: 'notify-window' },
        svg('title', {}, `notify window: ${utc(notifyAt)} to ${utc(expiry)} (UTC)`),
        svg('rect', {
          x: x(notifyAt),
          y: TOP - 4,
          width: Math.max(2, x(expiry) - x(notifyAt)),
          height: height - TOP - 18,
        }),
      ),
      svg(
        'g',
        { class: 'planned' },
        svg('title', {}, `rotation planned ${utc(notifyAt)} (UTC), when Key Vault raises KeyNearExpiry`),
        svg('line', { x1: x(notifyAt), x2: x(notifyAt), y1: TOP - 4, y2: height - BOTTOM + 4 }),
        svg('text', { x: x(notifyAt), y: height - 8, 'text-anchor': 'middle' }, `rotation ${utc(notifyAt)}`),
      ),
    );
  }
  markers.push(
    svg(
      'g',
      { class: 'today' },
      svg('line', { x1: x(now), x2: x(now), y1: 10, y2: height - BOTTOM + 4 }),
      svg('text', { x: x(now), y: 14, 'text-anchor': 'middle' }, 'today'),
    ),
  );

  const hidden = status.versions.length - shown.length;
  return svg(
    'svg',
    {
      class: 'timeline',
      viewBox: `0 0 ${WIDTH} ${height}`,
      role: 'img',
      'aria-label': `Expiry timeline of ${shown.length} versions${hidden > 0 ? ` (${hidden} older not shown)` : ''}`,
    },
    markers.slice(0, -1),
    rows,
    markers.slice(-1),
  );
}
