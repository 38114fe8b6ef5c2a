-- Captured payments never add up to more than the order's total.
--
-- A constraint trigger, DEFERRABLE INITIALLY DEFERRED: it runs at COMMIT, once the whole
-- transaction's payments (and any correction to the order) are in, so a refund-and-recapture
-- in one transaction is not refused half way. shop/payments.py serialises concurrent
-- payments with an advisory lock; this is the last line of defence behind it.
CREATE FUNCTION payments_within_order_total() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    order_total numeric;
    captured    numeric;
BEGIN
    SELECT o.total, coalesce(sum(p.amount), 0)
      INTO order_total, captured
      FROM orders o
      LEFT JOIN payments p ON p.order_id = o.id AND p.status = 'captured'
     WHERE o.id = NEW.order_id
     GROUP BY o.total;
    IF captured > order_total THEN
        RAISE EXCEPTION 'captured payments of order % (%) exceed its total (%)',
            NEW.order_id, captured, order_total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payments_within_order_total';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER payments_within_order_total
    AFTER INSERT OR UPDATE OF amount, status ON payments
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION payments_within_order_total();
