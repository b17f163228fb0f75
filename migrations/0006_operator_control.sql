-- Pause and continue: who asked to pause a running migration (cleared by continue), and since when its runner
-- holds it between two units of work. Why staff last moved it by hand (marked errored or completed), until its
-- next run. A run that holds its cut-over: since when it is ready, and who let it cut over. The backup a
-- completed run kept (a rewrite's original table), since when and its size then, until rollback or finalize.
-- Whether staff skip the precheck and health checks for the run queued.
ALTER TABLE async_migration
    ADD COLUMN pause_requested_by text,
    ADD COLUMN held_since timestamptz,
    ADD COLUMN status_note text,
    ADD COLUMN cutover_ready_since timestamptz,
    ADD COLUMN cutover_approved_by text,
    ADD COLUMN backup_table text,
    ADD COLUMN backup_since timestamptz,
    ADD COLUMN backup_bytes bigint,
    ADD COLUMN checks_skipped boolean NOT NULL DEFAULT false;
