-- Lease and job times come from the database's clock, so that worker machines whose clocks
-- disagree still agree on when a lease runs out.
CREATE OR REPLACE FUNCTION ciro_now() RETURNS DOUBLE PRECISION
    LANGUAGE SQL VOLATILE
    AS 'SELECT EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION';
