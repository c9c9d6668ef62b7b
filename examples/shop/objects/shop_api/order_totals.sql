-- Each order's total in cents.
CREATE VIEW shop_api.order_totals AS
SELECT l.order_id, sum(l.quantity * p.price_cents)::bigint AS total_cents
  FROM shop.order_lines l
  JOIN shop.products p ON p.sku = l.sku
 GROUP BY l.order_id;
