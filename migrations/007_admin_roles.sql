-- Where an admin's role comes from, so auth can re-sync it at every start: 'config' (the ADMIN_USERS
-- list: an admin taken off it is demoted) or 'bootstrap' (the one-time setup code: stays an admin).
-- Every admin so far was made by ADMIN_USERS.
ALTER TABLE users ADD COLUMN role_source text CHECK (role_source IN ('config', 'bootstrap'));
UPDATE users SET role_source = 'config' WHERE role = 'admin';

-- Sessions issued before this moment are refused (set when an account is demoted).
ALTER TABLE users ADD COLUMN sessions_valid_after timestamptz;
