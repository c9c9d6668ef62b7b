-- One row per order with its customer: what the storefront lists.
CREATE VIEW shop_api.customer_orders AS
SELECT o.id AS order_id, o.placed_at, c.id AS customer_id, c.email, c.name
  FROM shop.orders o
  JOIN shop.customers c ON c.id = o.customer_id;

GRANT SELECT ON shop_api.customer_orders TO shop_app;
