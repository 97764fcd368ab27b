-- vpc-migrate: lock-timeout=500ms
-- NOT VALID takes only a brief lock; existing rows are checked by 0006 without blocking writes.
ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total_cents > 0) NOT VALID;
