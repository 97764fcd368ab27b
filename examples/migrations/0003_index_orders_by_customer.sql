-- vpc-migrate: no-transaction
-- Built without blocking writes; a failure leaves an invalid index that `up` reports.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_id_idx ON orders (customer_id);
