DROP TABLE organization_settings;
