BEGIN;
ALTER SCHEMA "shop_api" SWAP WITH "shop_api__sy_42";
ALTER CLUSTER "serving" SWAP WITH "serving__sy_42";
COMMIT;
