-- Deploy shop:customers to pg
-- requires: schema

BEGIN;

CREATE TABLE shop.customers (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      TEXT        NOT NULL UNIQUE,
    name       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
GRANT SELECT ON shop.customers TO :"app_role";

COMMIT;
