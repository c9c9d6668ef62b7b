-- Deploy shop:products to pg
-- requires: schema

BEGIN;

CREATE TABLE shop.products (
    sku         TEXT    PRIMARY KEY,
    title       TEXT    NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0)
);
GRANT SELECT ON shop.products TO :"app_role";

COMMIT;
