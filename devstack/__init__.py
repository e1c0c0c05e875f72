"""Dev tooling, needing the `dev` extra: `petcare dev`, the demo data, and the local servers
(PostgreSQL, Temporal, SMTP, SFTP) the tests and the benchmarks start. Never in the production image."""
