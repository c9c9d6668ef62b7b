-- Verify shop:products on pg

SELECT sku, title, price_cents FROM shop.products WHERE false;
