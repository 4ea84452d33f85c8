-- Endpoint versions (computeType AKSENDPOINT) live with their endpoint, as one record changes at a time.
ALTER TABLE services ADD COLUMN versions TEXT NOT NULL DEFAULT '[]';
