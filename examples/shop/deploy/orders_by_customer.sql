-- Deploy shop:orders_by_customer to pg
-- CREATE INDEX CONCURRENTLY cannot run in a transaction: switchyard runs this script in
-- autocommit and records the change only once the index exists.

CREATE INDEX CONCURRENTLY orders_by_customer ON shop.orders (customer_id);
