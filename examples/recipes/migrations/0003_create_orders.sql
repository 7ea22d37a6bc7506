-- migrate:up
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES users (id),
  cents INTEGER NOT NULL CHECK (cents >= 0)
);
CREATE INDEX ix_orders_user_id ON orders (user_id);
-- migrate:down
DROP TABLE orders;
