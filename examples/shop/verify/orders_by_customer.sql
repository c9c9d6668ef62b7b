-- Verify shop:orders_by_customer on pg

SELECT 1/count(*) FROM pg_indexes WHERE schemaname = 'shop' AND indexname = 'orders_by_customer';
