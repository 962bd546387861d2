//! HTTP/1.1 reverse proxy.
