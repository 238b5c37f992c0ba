"""Avro schemas (schemas/avro/*.avsc), their id catalog, and Confluent wire-format serialization."""
