-- Verify shop:orders on pg

SELECT id, customer_id, placed_at FROM shop.orders WHERE false;
SELECT order_id, sku, quantity FROM shop.order_lines WHERE false;
