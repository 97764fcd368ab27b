-- vpc-migrate: statement-timeout=0
ALTER TABLE orders VALIDATE CONSTRAINT orders_total_positive;
