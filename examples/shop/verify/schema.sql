-- Verify shop:schema on pg

SELECT 1/count(*) FROM pg_namespace WHERE nspname = 'shop';
