-- A view over the two views above: orders and spend per customer.
CREATE VIEW shop_api.customer_summary AS
SELECT co.customer_id, co.email, count(*) AS orders, coalesce(sum(t.total_cents), 0)::bigint AS spent_cents
  FROM shop_api.customer_orders co
  LEFT JOIN shop_api.order_totals t USING (order_id)
 GROUP BY co.customer_id, co.email;

GRANT SELECT ON shop_api.customer_summary TO shop_app;
