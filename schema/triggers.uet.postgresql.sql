-- orchestrator-monitor change notifications for mapping 'uet' in schema 'public'
-- (the daemon LISTENs on channel 'orchestrator_monitor'; remove with `orchestrator init --drop-triggers`)
BEGIN;
CREATE OR REPLACE FUNCTION "public"."orchestrator_monitor_notify_runs"() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('orchestrator_monitor', '*');
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT json_agg(DISTINCT run_id)::text INTO payload FROM (SELECT "run_id"::text FROM new_rows) AS touched(run_id);
    ELSIF TG_OP = 'DELETE' THEN
        SELECT json_agg(DISTINCT run_id)::text INTO payload FROM (SELECT "run_id"::text FROM old_rows) AS touched(run_id);
    ELSE
        SELECT json_agg(DISTINCT run_id)::text INTO payload
        FROM (SELECT "run_id"::text FROM new_rows UNION SELECT "run_id"::text FROM old_rows) AS touched(run_id);
    END IF;
    IF payload IS NULL THEN
        RETURN NULL;  -- the statement touched no row
    END IF;
    IF octet_length(payload) > 7999 THEN
        payload := '*';
    END IF;
    PERFORM pg_notify('orchestrator_monitor', payload);
    RETURN NULL;
END
$body$;
DROP TRIGGER IF EXISTS "orchestrator_monitor_notify_ins" ON "public"."runs";
CREATE TRIGGER "orchestrator_monitor_notify_ins" AFTER INSERT ON "public"."runs" REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION "public"."orchestrator_monitor_notify_runs"();
DROP TRIGGER IF EXISTS "orchestrator_monitor_notify_upd" ON "public"."runs";
CREATE TRIGGER "orchestrator_monitor_notify_upd" AFTER UPDATE ON "public"."runs" REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION "public"."orchestrator_monitor_notify_runs"();
DROP TRIGGER IF EXISTS "orchestrator_monitor_notify_del" ON "public"."runs";
CREATE TRIGGER "orchestrator_monitor_notify_del" AFTER DELETE ON "public"."runs" REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION "public"."orchestrator_monitor_notify_runs"();
DROP TRIGGER IF EXISTS "orchestrator_monitor_notify_truncate" ON "public"."runs";
CREATE TRIGGER "orchestrator_monitor_notify_truncate" AFTER TRUNCATE ON "public"."runs" FOR EACH STATEMENT EXECUTE FUNCTION "public"."orchestrator_monitor_notify_runs"();
CREATE OR REPLACE FUNCTION "public"."orchestrator_monitor_notify_step_attempts"() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('orchestrator_monitor', '*');
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT json_agg(DISTINCT run_id)::text INTO payload FROM (SELECT "run_id"::text FROM new_rows) AS touched(run_id);
    ELSIF TG_OP = 'DELETE' THEN
        SELECT json_agg(DISTINCT run_id)::text INTO payload FROM (SELECT "run_id"::text FROM old_rows) AS touched(run_id);
    ELSE
        SELECT json_agg(DISTINCT run_id)::text INTO payload
        FROM (SELECT "run_id"::text FROM new_rows UNION SELECT "run_id"::text FROM old_rows) AS touched(run_id);
    END IF;
    IF payload IS NULL THEN
        RETURN NULL;  -- the statement touched no row
    END IF;
    IF octet_length(payload) > 7999 THEN
        payload := '*';
    END IF;
    PERFORM pg_notify('orchestrator_monitor', payload);
    RETURN NULL;
END
$body$;
DROP TRIGGER IF EXISTS "orchestrator_monitor_notify_ins" ON "public"."step_attempts";
CREATE TRIGGER "orchestrator_monitor_notify_ins" AFTER INSERT ON "public"."step_attempts" REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION "public"."orchestrator_monitor_notify_step_attempts"();
DROP TRIGGER IF EXISTS "orchestrator_monitor_notify_upd" ON "public"."step_attempts";
CREATE TRIGGER "orchestrator_monitor_notify_upd" AFTER UPDATE ON "public"."step_attempts" REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION "public"."orchestrator_monitor_notify_step_attempts"();
DROP TRIGGER IF EXISTS "orchestrator_monitor_notify_del" ON "public"."step_attempts";
CREATE TRIGGER "orchestrator_monitor_notify_del" AFTER DELETE ON "public"."step_attempts" REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION "public"."orchestrator_monitor_notify_step_attempts"();
DROP TRIGGER IF EXISTS "orchestrator_monitor_notify_truncate" ON "public"."step_attempts";
CREATE TRIGGER "orchestrator_monitor_notify_truncate" AFTER TRUNCATE ON "public"."step_attempts" FOR EACH STATEMENT EXECUTE FUNCTION "public"."orchestrator_monitor_notify_step_attempts"();
COMMIT;
