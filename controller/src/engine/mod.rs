//! What a database can do: deploy, revert and verify changes.
