"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis)."""
