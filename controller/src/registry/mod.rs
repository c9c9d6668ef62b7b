//! The registry inside the target database.
