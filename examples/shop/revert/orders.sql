-- Revert shop:orders from pg

BEGIN;

DROP TABLE shop.order_lines;
DROP TABLE shop.orders;

COMMIT;
