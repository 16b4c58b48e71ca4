// What the rotator did: the key's job in progress as a bar, and its audit records, newest first, page by page.
import type { JobSummary } from '../application/status';
import type { AuditRecordView, Wire } from './api';
import { h } from './dom';
import { duration, plural, shortVersion, time } from './format';

type Job = Wire<JobSummary>;

/** Job progress as moved / in flight / waiting / failed. */
export function jobProgress(job: Job): HTMLElement {
  const p = job.progress;
  const parts = [
    { name: 'moved', count: p.moved + p['already-current'] + p.skipped },
    { name: 'in flight', count: p['in-flight'] },
    { name: 'waiting', count: p.queued + p.throttled + p.retrying + p.planned },
    { name: 'failed', count: p.failed },
  ];
  const total = parts.reduce((sum, part) => sum + part.count, 0) || 1;
  const label = parts.map((part) => `${part.count} ${part.name}`).join(', ');
  return h(
    'div',
    { class: 'job', 'data-job-id': job.jobId },
    h(
      'p',
      {},
      h('strong', {}, job.done ? 'Last job' : 'Job in progress'),
      ` to version ${shortVersion(job.targetVersion.split('/')[5])} (${job.trigger}), opened `,
      time(job.openedAt),
    ),
    h(
      'div',
      { class: 'progress', role: 'img', 'aria-label': `Job progress: ${label}` },
      parts.map((part) => {
        const segment = h('span', {
          class: `segment ${part.name.replace(' ', '-')}`,
          title: `${part.count} ${part.name}`,
        });
        // Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
        segment.style.width = `${(100 * part.count) / total}%`;
        return segment;
      }),
    ),
    h(
      'ul',
      { class: 'legend' },
      parts.map((part) => h('li', { class: part.name.replace(' ', '-') }, `${part.count} ${part.name}`)),
    ),
  );
}

export function auditTable(records: AuditRecordView[]): HTMLElement {
  if (!records.length) return h('p', { class: 'empty' }, 'Nothing recorded for this key yet.');
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      { class: 'audit' },
      h('caption', { class: 'visually-hidden' }, 'Audit records, newest first'),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['Time', 'Result', 'Hub', 'Version', 'Trigger', 'Details'].map((t) => h('th', { scope: 'col' }, t)),
        ),
      ),
      h(
        'tbody',
        {},
        records.map((r) =>
          h(
            'tr',
            { class: `record ${r.result}` },
            h('td', {}, time(r.time)),
            h('td', {}, h('span', { class: `chip ${r.result}` }, r.result)),
            h('td', { title: r.hubId ?? '' }, r.hubId ? r.hubId.split('/').pop() : '—'),
            h(
              'td',
              { class: 'mono' },
              r.fromVersion || r.toVersion
                ? `${shortVersion(r.fromVersion) || '—'} → ${shortVersion(r.toVersion) || '—'}`
                : '',
            ),
            h('td', {}, r.trigger),
            h(
              'td',
              { class: 'details' },
              [r.errorCode, r.message ?? r.reason].filter(Boolean).join(': '),
              r.durationMs !== undefined ? ` (${duration(r.durationMs)})` : '',
            ),
          ),
        ),
      ),
    ),
  );
}

export const recordCount = (n: number) => plural(n, 'record');
