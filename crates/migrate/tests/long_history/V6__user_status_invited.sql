-- A value added here is used by the next migration (its own transaction would refuse it).
ALTER TYPE user_status ADD VALUE 'invited' BEFORE 'active';
