-- Revert shop:orders_by_customer from pg

DROP INDEX CONCURRENTLY shop.orders_by_customer;
