"""The CRM hand-off (reverse ETL): what changed since the last export, to files and a webhook."""
