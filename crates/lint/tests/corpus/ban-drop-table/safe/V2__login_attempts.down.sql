-- The exact inverse of the up: dropping what it created is expected.
DROP TABLE login_attempts;
