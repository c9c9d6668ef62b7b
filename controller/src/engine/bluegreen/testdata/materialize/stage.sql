CREATE CLUSTER "serving__sy_42" (SIZE = '50cc', REPLICATION FACTOR = 2);
CREATE SCHEMA "shop_api__sy_42";
CREATE VIEW "shop_api__sy_42".orders_v AS SELECT id, amount FROM shop.orders;
CREATE MATERIALIZED VIEW "shop_api__sy_42".totals IN CLUSTER "serving__sy_42" AS SELECT count(*) AS n FROM "shop_api__sy_42".orders_v;
CREATE INDEX totals_n IN CLUSTER "serving__sy_42" ON "shop_api__sy_42".totals (n);
