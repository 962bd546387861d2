//! HTTP/1.1 reverse proxy.
//!
//! Pure parts: [`http`] (framing, smuggling rules, head rewriting) and
//! [`balance`] (server selection). Everything else drives them: one worker
//! thread per core, each with its own runtime (io_uring or epoll) and its
//! own SO_REUSEPORT listeners.

pub mod balance;
pub mod http;
