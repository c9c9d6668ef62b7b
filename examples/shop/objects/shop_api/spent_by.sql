-- plpgsql resolves names when it runs: switchyard pins its search_path to the staging
-- schema while staged and to shop_api once promoted.
CREATE FUNCTION shop_api.spent_by(customer_email text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT spent_cents FROM shop_api.customer_summary WHERE email = customer_email);
END
$$;
