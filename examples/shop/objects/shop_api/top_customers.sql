-- Materialized: refreshed by whoever owns the schedule; staged and swapped like the rest.
CREATE MATERIALIZED VIEW shop_api.top_customers AS
SELECT customer_id, email, spent_cents
  FROM shop_api.customer_summary
 ORDER BY spent_cents DESC
 LIMIT 100;

CREATE UNIQUE INDEX top_customers_id ON shop_api.top_customers (customer_id);
