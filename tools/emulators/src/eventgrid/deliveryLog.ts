// What the Event Grid emulator records about its deliveries, for tests and the benchmark: every attempt with its
// timings, and per event when it was published, acknowledged or dead-lettered.
import type { DeliveryOutcome } from './payload';

export type DeadLetterReason =
  | 'MaxDeliveryAttemptsExceeded'
  | 'TimeToLiveExceeded'
  | 'UndeliverableDueToHttpBadRequest'
  | 'UndeliverableDueToClientError';

export interface DeliveryAttempt {
  subscriptionName: string;
  eventId: string;
  eventType: string;
  /** 1 for the first attempt; the request's aeg-delivery-count header is this minus one. */
  attempt: number;
  /** When the attempt fell due: the publish time for the first, the retry schedule's time for the others. */
  dueAt: string;
  attemptedAt: string;
  /** attemptedAt − dueAt: how long delayed delivery held the attempt back (0 for a healthy endpoint). */
  delayedMs: number;
  /** Absent when no HTTP response came back in time (connection error, timeout). */
  httpStatus?: number;
  /** When the answer arrived and how long after the request went out (absent without an answer in time). */
  answeredAt?: string;
  latencyMs?: number;
  outcome: DeliveryOutcome;
  /** What happens to the event next. */
  next: 'done' | 'retry' | 'dead-letter';
  /** An answer that came after the response deadline, when the attempt had already failed as TimedOut. */
  lateAnswer?: { httpStatus: number; latencyMs: number };
}

/** One event for one subscription, from publish to acknowledgement or dead letter. */
export interface EventDelivery {
  subscriptionName: string;
  eventId: string;
  eventType: string;
  publishedAt: string;
  status: 'pending' | 'delivered' | 'dead-lettered';
  attempts: number;
  /** When the endpoint acknowledged it (a 2xx within the deadline). */
  deliveredAt?: string;
  /** deliveredAt − publishedAt: what the event waited for, retries and delays included. */
  ackLatencyMs?: number;
  deadLetterReason?: DeadLetterReason;
}

export class DeliveryLog {
  private attemptList: DeliveryAttempt[] = [];
  private eventList: EventDelivery[] = [];

  /** Starts the record of one event for one subscription; the caller updates it through the other methods. */
  open(subscriptionName: string, eventId: string, eventType: string, publishedAt: Date): EventDelivery {
    const record: EventDelivery = {
      subscriptionName,
      eventId,
      eventType,
      publishedAt: publishedAt.toISOString(),
      status: 'pending',
      attempts: 0,
    };
    this.eventList.push(record);
    return record;
  }

  addAttempt(attempt: DeliveryAttempt): DeliveryAttempt {
    this.attemptList.push(attempt);
    return attempt;
  }

  delivered(record: EventDelivery, at: Date): void {
    Object.assign(record, {
      status: 'delivered',
      deliveredAt: at.toISOString(),
      ackLatencyMs: at.getTime() - Date.parse(record.publishedAt),
    });
  }

  deadLettered(record: EventDelivery, reason: DeadLetterReason): void {
    Object.assign(record, { status: 'dead-lettered', deadLetterReason: reason });
  }

  attempts(): DeliveryAttempt[] {
    return this.attemptList.map((attempt) => structuredClone(attempt));
  }

  events(): EventDelivery[] {
    return this.eventList.map((event) => ({ ...event }));
  }

  /** Forgets every attempt and every settled event (events still pending keep being recorded). */
  clear(): void {
    this.attemptList = [];
    this.eventList = this.eventList.filter((event) => event.status === 'pending');
  }
}
