// "Plan a rotation" and "Plan a sync": the dry run first, shown as a plan; carrying it out takes a second, explicit
// confirmation in a dialog that names the key and the hubs.
import type { Api, RotationReport } from './api';
import { h } from './dom';
import { plural, shortVersion, time, versionOfId } from './format';

type Kind = 'rotate' | 'sync';

const WORDS: Record<Kind, { plan: string; run: string; confirm: (key: string, hubs: number) => string }> = {
  rotate: {
    plan: 'Plan a rotation',
    run: 'Rotate now…',
    confirm: (key, hubs) => `Create a new version of ${key} and move ${plural(hubs, 'hub')} to it?`,
  },
  sync: {
    plan: 'Plan a sync',
    run: 'Sync now…',
    confirm: (key, hubs) => `Move ${plural(hubs, 'hub')} to the current version of ${key}?`,
  },
};

export interface ActionsOptions {
  api: Api;
  keyId: string;
  keyName: string;
  /** A run was accepted: the activity list has news. */
  onDone: () => void;
  onError: (error: unknown) => void;
}

export function actions({ api, keyId, keyName, onDone, onError }: ActionsOptions): HTMLElement {
  const output = h('div', { class: 'plan', 'aria-live': 'polite' });
  const busy = (on: boolean) =>
    root.querySelectorAll('button').forEach((b) => {
      b.disabled = on;
    });

  async function plan(kind: Kind) {
    busy(true);
    output.replaceChildren(h('p', {}, 'Planning…'));
    try {
      const report = await api.post<RotationReport>(`keys/${kind}`, { keyId, dryRun: true });
      output.replaceChildren(planView(kind, report));
    } catch (error) {
      output.replaceChildren();
      onError(error);
    } finally {
      busy(false);
    }
  }

  function planView(kind: Kind, report: RotationReport): HTMLElement {
    const moving = report.hubs.filter((hub) => hub.result === 'planned');
    const planned = report.plannedVersion;
    return h(
      'section',
      { class: 'plan-result', 'aria-label': 'Plan' },
      h('h4', {}, `Plan (dry run): ${report.decision}`),
      planned
        ? h('p', {}, `New version: ${planned.keyType} ${planned.keySize} bits, expires `, time(planned.expiresOn), '.')
        : report.targetVersion
          ? h('p', {}, `Target version: ${shortVersion(versionOfId(report.targetVersion))}.`)
          : null,
      h(
        'ul',
        { class: 'plan-hubs' },
        report.hubs.map((hub) =>
          h(
            'li',
            { 'data-hub-id': hub.hubId },
            h('strong', {}, hub.hubName),
            `: ${hub.result}`,
            hub.result === 'planned'
              ? ` ${hub.from.map((id) => shortVersion(versionOfId(id))).join(', ')} → ${shortVersion(versionOfId(hub.to)) || 'new version'}`
              : hub.reason
                ? ` (${hub.reason})`
                : '',
          ),
        ),
      ),
      h(
        'p',
        {},
        h(
          'button',
          { type: 'button', class: 'danger', onclick: () => confirmRun(kind, moving.length) },
          WORDS[kind].run,
        ),
      ),
    );
  }

  function confirmRun(kind: Kind, hubs: number) {
    const dialog = h(
      'dialog',
      { class: 'confirm', 'aria-labelledby': 'confirm-title' },
      h('h3', { id: 'confirm-title' }, WORDS[kind].confirm(keyName, hubs)),
      h('p', {}, 'This changes Azure resources. The result appears under Activity.'),
      h(
        'form',
        { method: 'dialog' },
        h('button', { value: 'cancel', autofocus: true }, 'Cancel'),
        ' ',
        h('button', { value: 'confirm', class: 'danger' }, kind === 'rotate' ? 'Yes, rotate' : 'Yes, sync'),
      ),
    );
    dialog.addEventListener('close', () => {
      dialog.remove();
      if (dialog.returnValue === 'confirm') void run(kind);
    });
    document.body.append(dialog);
    dialog.showModal();
  }

  async function run(kind: Kind) {
    busy(true);
    output.replaceChildren(h('p', {}, kind === 'rotate' ? 'Rotating…' : 'Syncing…'));
    try {
      const report = await api.post<RotationReport>(`keys/${kind}`, { keyId, dryRun: false });
      output.replaceChildren(
        h(
          'p',
          { class: `run-result ${report.status}` },
          `${kind === 'rotate' ? 'Rotation' : 'Sync'} ${report.status}: ${report.decision}`,
          report.jobId ? ` (job ${report.jobId})` : '',
        ),
      );
      onDone();
    } catch (error) {
      output.replaceChildren();
      onError(error);
    } finally {
      busy(false);
    }
  }

  const root = h(
    'div',
    { class: 'actions' },
    h(
      'div',
      { class: 'buttons' },
      (['rotate', 'sync'] as const).map((kind) =>
        h('button', { type: 'button', onclick: () => void plan(kind) }, WORDS[kind].plan),
      ),
    ),
    output,
  );
  return root;
}
