-- Pause and continue: who asked to pause a running migration (cleared by continue), and since when its runner
-- holds it between two units of work. Why staff last moved it by hand (marked errored or completed), until its
-- next run. A run that holds its cut-over: since when it is ready, and who let it cut over.
ALTER TABLE async_migration
    ADD COLUMN pause_requested_by text,
    ADD COLUMN held_since timestamptz,
    ADD COLUMN status_note text,
    ADD COLUMN cutover_ready_since timestamptz,
    ADD COLUMN cutover_approved_by text;
