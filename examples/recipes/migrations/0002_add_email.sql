-- migrate:up
ALTER TABLE users ADD COLUMN email TEXT;
CREATE UNIQUE INDEX ix_users_email ON users (email);
-- migrate:down
DROP INDEX ix_users_email;
ALTER TABLE users DROP COLUMN email;
