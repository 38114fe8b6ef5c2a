-- Orders whose "order placed" event the stock worker has applied (shop/events.py).
-- Written in the same transaction as the stock change: a redelivered or republished
-- event finds its order here and is skipped, so stock is taken exactly once.
CREATE TABLE processed_orders (
    order_id     bigint      PRIMARY KEY,
    message_id   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
