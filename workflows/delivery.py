"""One batch of notifications delivered (activities/notices.py says why a workflow per batch).

Started by the activity that wrote the batch's outbox rows, with id `notify-<key>`; it runs
the delivery activity under Temporal's retry policy (backoff, a bounded number of attempts)
and ends. It has no timer, so on the simulated clock it never moves time, and no parent.
A delivery that never succeeds is recorded as failed in the outbox; the workflow still
completes: nothing waits for it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notices import DELIVERY_WORKFLOW, DeliveryBatch, DeliveryReport, Notices

#: One attempt may deliver a large group (a vote's voters): it heartbeats while it runs.
ATTEMPT_TIMEOUT = timedelta(hours=2)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name=DELIVERY_WORKFLOW)
class NotificationDelivery:
    @workflow.run
    async def run(self, batch: DeliveryBatch) -> DeliveryReport | None:
        try:
            return await workflow.execute_activity_method(
                Notices.deliver,
                batch,
                start_to_close_timeout=ATTEMPT_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=batch.retry_seconds),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(
                        seconds=max(batch.retry_max_seconds, batch.retry_seconds)
                    ),
                    maximum_attempts=batch.attempts,
                ),
            )
        except ActivityError as exc:
            # Only when even the last attempt could not record its outcome (Postgres away):
            # the rows stay pending with their last error.
            workflow.logger.warning("delivery of %s gave up: %s", batch.key, exc.cause or exc)
            return None
