// The hub step queues, named apart from the queue adapter so that the queue trigger registrations do not load the
// storage SDK.
export const HUB_STEPS_QUEUE = 'hub-steps';
/** Where the host moves a step message that failed maxDequeueCount times (host.json). */
export const HUB_STEPS_POISON_QUEUE = `${HUB_STEPS_QUEUE}-poison`;
