// Outcome events as CloudEvents on an Event Grid topic, so alert rules and other systems can react.
import type { TokenCredential } from '@azure/core-auth';
import { AzureKeyCredential, EventGridPublisherClient } from '@azure/eventgrid';
import { chunks } from '../domain/concurrency';
import type { Outcome, OutcomePublisher } from '../domain/ports';
import { guard } from './azureErrors';

export const OUTCOME_SOURCE = '/cmk-rotator';
const BATCH = 100;

export class EventGridOutcomePublisher implements OutcomePublisher {
  private readonly client: EventGridPublisherClient<'CloudEvent'>;

  constructor(endpoint: string, credential: TokenCredential | { key: string }) {
    this.client = new EventGridPublisherClient(
      endpoint,
      'CloudEvent',
      'key' in credential ? new AzureKeyCredential(credential.key) : credential,
    );
  }

  async publish(outcomes: Outcome[]): Promise<void> {
    // Batches are independent notifications (Event Grid keeps no order), so they go out together.
    await guard('the outcome topic', () =>
      Promise.all(
        chunks(outcomes, BATCH).map((batch) =>
          this.client.send(
            batch.map((o) => ({
              ...(o.id ? { id: o.id } : {}),
              type: o.type,
              source: OUTCOME_SOURCE,
              subject: o.subject,
              data: o.data,
              datacontenttype: 'application/json',
            })),
          ),
        ),
      ),
    );
  }
}
