"""The PostgreSQL ``NOTIFY`` channels tasktrail sends on."""

from __future__ import annotations

#: "Events were committed; read the events table after your cursor." No payload is needed.
EVENTS_CHANNEL = "tasktrail_events"
#: "A task was queued on the queue named in the payload": wakes the workers of that queue.
QUEUED_CHANNEL = "tasktrail_queued"
#: Sent on ``QUEUED_CHANNEL`` when a task becomes scheduled. No queue is named "", so every
#: listener takes it as "look again, at when scheduled tasks fall due too".
SCHEDULED_PAYLOAD = ""
