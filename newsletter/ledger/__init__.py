"""The SQLite file in var/: deliveries, list events and inbox records, each table with one owner."""
