-- Run once by the postgres image (docker-entrypoint-initdb.d) as the cluster's superuser.
-- The archive's roles: "archive" owns the catalog's database and schema but is no superuser
-- (no COPY TO PROGRAM, no server files, no other sessions); "archive_readonly" is the role
-- of `archive sql` and the web view: `archive db grant` (run by the init service as
-- "archive") gives it SELECT on the catalog's tables and views and nothing else.
CREATE ROLE archive LOGIN PASSWORD 'archive'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
CREATE ROLE archive_readonly LOGIN PASSWORD 'readonly'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
ALTER ROLE archive_readonly SET default_transaction_read_only = on;
ALTER ROLE archive_readonly SET statement_timeout = '30s';
ALTER ROLE archive_readonly SET lock_timeout = '2s';
ALTER ROLE archive_readonly SET idle_in_transaction_session_timeout = '60s';
CREATE DATABASE archive OWNER archive;
\connect archive
ALTER SCHEMA public OWNER TO archive;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO archive_readonly;
-- a read-only session must not end or cancel others, nor write large objects
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_terminate_backend(integer, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_cancel_backend(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.lo_create(oid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.lo_creat(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.lo_from_bytea(oid, bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.lo_put(oid, bigint, bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.lo_unlink(oid) FROM PUBLIC;
