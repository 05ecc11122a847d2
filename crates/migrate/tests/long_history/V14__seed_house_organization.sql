-- Data only: the organisation EcoMind's own staff belong to.
INSERT INTO organizations (name, slug) VALUES ('EcoMind', 'ecomind')
ON CONFLICT (slug) DO NOTHING;
