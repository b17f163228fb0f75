-- Pause and continue: who asked to pause a running migration (cleared by continue), and since when its runner
-- holds it between two units of work.
ALTER TABLE async_migration
    ADD COLUMN pause_requested_by text,
    ADD COLUMN held_since timestamptz;
