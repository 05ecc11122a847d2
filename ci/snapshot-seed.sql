-- A generated EcoMind snapshot: rows in every table of the schema at V1 (run `migrate --to 1`
-- first). 200 organizations, 10,000 users, :events events with their daily aggregates, and
-- 20,000 audit log rows.
--
-- :events is the number of events. It is replaced by plain string substitution by its users:
-- the dry-run step of every CI matrix cell (crates/ci, 2,000 events) and the dry-run rows of
-- `cargo xtask bench` (crates/bench, 100,000 and 1,000,000 events). psql substitutes it too:
--   psql -v events=2000 -f ci/snapshot-seed.sql DBNAME

INSERT INTO organizations (org_id, name, plan_type)
  SELECT 'org-' || g, 'Organisation ' || g, (ARRAY['free','pro','enterprise'])[g % 3 + 1]
  FROM generate_series(1, 200) g;

INSERT INTO users (user_id, org_id, email, role)
  SELECT 'user-' || g, 'org-' || (g % 200 + 1), 'user' || g || '@example.com', 'viewer'
  FROM generate_series(1, 10000) g;

INSERT INTO events_enriched (id, org_id, user_id, provider, model, tokens_in, tokens_out,
    node_type, region, kwh, water_l, co2_kg, ts, source, metadata)
  SELECT md5(g::text), 'org-' || (g % 200 + 1), 'user-' || (g % 10000 + 1),
         (ARRAY['openai','anthropic','google','mistral'])[g % 4 + 1], 'model-' || (g % 9),
         g % 4000, g % 900, 'gpu', 'eu-west-' || (g % 3), (g % 97) / 1000.0, (g % 89) / 100.0,
         (g % 83) / 1000.0, timestamptz '2026-01-01' + g * interval '7 seconds', 'bench',
         jsonb_build_object('request', g)
  FROM generate_series(1, :events) g;

INSERT INTO daily_org_agg
  SELECT ts::date, org_id, count(*), sum(kwh), sum(water_l), sum(co2_kg)
  FROM events_enriched GROUP BY 1, 2;

INSERT INTO daily_user_agg
  SELECT ts::date, org_id, user_id, count(*), sum(kwh), sum(water_l), sum(co2_kg)
  FROM events_enriched GROUP BY 1, 2, 3;

INSERT INTO audit_logs (org_id, user_id, action)
  SELECT 'org-' || (g % 200 + 1), 'user-' || (g % 10000 + 1), 'login'
  FROM generate_series(1, 20000) g;

ANALYZE;
