-- Login passwords, as scrypt hashes with their parameters (shop/passwords.py).
-- Nullable: users created before logins existed, or through the API, have none yet.
ALTER TABLE users ADD COLUMN password_hash text;
