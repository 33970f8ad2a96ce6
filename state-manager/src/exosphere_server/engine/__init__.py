"""Graph templates, placeholders, validation, transitions, retries, unites and cron math: pure logic, no HTTP or SQL."""
