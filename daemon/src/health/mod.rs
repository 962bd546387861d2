//! Active and passive health checks.
