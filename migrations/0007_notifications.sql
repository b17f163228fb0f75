-- Notifications for staff who are not watching: the outbox of events a webhook is told of, each with its
-- delivery. A migration's errored, completed and ready-to-cut-over events are written by the trigger below,
-- in the transaction of the change itself, so none is lost and none is sent for a change that rolled back;
-- a wait longer than the setting notify_waiting_minutes is written by a runner (engine/src/notifications.rs),
-- once per wait: `occurrence` tells the runners' inserts of one wait apart from a later wait's.

ALTER TABLE async_migration ADD COLUMN waiting_since timestamptz;

CREATE TABLE notification (
    id              bigserial PRIMARY KEY,
    -- NULL for a test notification sent from the settings tab.
    migration_name  text REFERENCES async_migration (name) ON DELETE CASCADE,
    event           text        NOT NULL CHECK (event IN ('errored', 'failed_at_startup', 'completed', 'ready_to_cut_over', 'waiting', 'test')),
    detail          text        NOT NULL DEFAULT '',
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    occurrence      text UNIQUE,
    requested_by    text,
    -- Delivery: attempts so far, when the next is due, and how the last one went.
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    last_outcome    text,
    delivered_at    timestamptz,
    gave_up_at      timestamptz
);
CREATE INDEX notification_due ON notification (next_attempt_at) WHERE delivered_at IS NULL AND gave_up_at IS NULL;

-- Written only while a webhook is configured: without one there is nobody to tell, now or later.
CREATE FUNCTION enqueue_migration_notification() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM runtime_setting WHERE key = 'webhook_url' AND value <> '""'::jsonb) THEN
        RETURN NEW;
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND OLD.status <> 'not_started'
       AND NEW.status IN ('errored', 'failed_at_startup', 'completed') THEN
        INSERT INTO notification (migration_name, event, detail)
        VALUES (NEW.name, NEW.status, coalesce(
            NEW.status_note,
            CASE WHEN NEW.status <> 'completed' THEN
                (SELECT message FROM async_migration_error WHERE migration_name = NEW.name ORDER BY id DESC LIMIT 1)
            END,
            ''));
    END IF;
    IF NEW.cutover_ready_since IS NOT NULL AND OLD.cutover_ready_since IS NULL THEN
        INSERT INTO notification (migration_name, event) VALUES (NEW.name, 'ready_to_cut_over');
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER async_migration_notify AFTER UPDATE ON async_migration
    FOR EACH ROW EXECUTE FUNCTION enqueue_migration_notification();

-- Deliveries are announced, so a runner sends a new one at once instead of at its next poll.
CREATE FUNCTION notify_notification_queued() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('amigo_notification_queued', NEW.id::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER notification_queued AFTER INSERT ON notification
    FOR EACH ROW EXECUTE FUNCTION notify_notification_queued();
