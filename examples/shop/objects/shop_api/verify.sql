-- Runs against the staging schema before the swap and against shop_api after it.
SELECT customer_id, email, orders, spent_cents FROM shop_api.customer_summary WHERE false;
SELECT shop_api.spent_by('nobody@example.com');
SELECT 1 FROM shop_api.top_customers WHERE false;
