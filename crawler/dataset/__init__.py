"""The published dataset: batches (records → JSON Lines + Parquet objects), the
local spool that makes a batch durable before it reaches the store, the
publisher that moves spooled batches into the store and writes each run's
manifest last, and the reader behind ``newsarchive dataset ls|verify|export``.
DATASET.md describes the result for consumers."""
