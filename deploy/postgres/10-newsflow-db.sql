-- The crawl state (NEWSFLOW_STATE_DB_URL) lives in a database of its own beside Airflow's.
-- Run once by the postgres image on an empty data volume.
CREATE DATABASE newsflow OWNER airflow;
