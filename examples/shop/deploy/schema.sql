-- Deploy shop:schema to pg

BEGIN;

CREATE SCHEMA shop;

-- psql does not substitute variables inside $$ bodies; hand the role name over in a
-- transaction-local setting instead.
SELECT set_config('shop.app_role', :'app_role', true);
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = current_setting('shop.app_role')) THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN', current_setting('shop.app_role'));
    END IF;
END
$$;
GRANT USAGE ON SCHEMA shop TO :"app_role";

COMMIT;
