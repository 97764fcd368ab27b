CREATE TABLE orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    total_cents bigint NOT NULL CHECK (total_cents >= 0),
    placed_at   timestamptz NOT NULL DEFAULT now()
);

INSERT INTO customers (email) VALUES ('ada@example.com'), ('grace@example.com');
INSERT INTO orders (customer_id, total_cents)
SELECT id, 1999 FROM customers;
