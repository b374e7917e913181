"""SLA engine: policies, ticket timers, breaches and reports over Arrow batches."""
