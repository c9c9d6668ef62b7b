-- Deploy shop:orders to pg
-- requires: customers, products

BEGIN;

CREATE TABLE shop.orders (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id BIGINT      NOT NULL REFERENCES shop.customers (id),
    placed_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE shop.order_lines (
    order_id BIGINT  NOT NULL REFERENCES shop.orders (id) ON DELETE CASCADE,
    sku      TEXT    NOT NULL REFERENCES shop.products (sku),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku)
);
GRANT SELECT ON shop.orders, shop.order_lines TO :"app_role";

COMMIT;
